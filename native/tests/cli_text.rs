//! `sana-video debug text-encoder` and `debug encode-prompt` end to end against the
//! transformers / diffusers fixtures, and their refusals of bad input (clear message,
//! non-zero exit, no output file).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn text_encoder(model: &Path, inputs: &Path, out: &Path, backend: &str) -> Output {
    bin()
        .args(["debug", "text-encoder", "--model"])
        .arg(model)
        .arg("--inputs")
        .arg(inputs)
        .arg("--output")
        .arg(out)
        .args(["--backend", backend])
        .output()
        .unwrap()
}

#[test]
fn debug_text_encoder_matches_transformers() {
    let dir = scratch("te");
    for backend in ["cpu", "wgpu"] {
        for case in ["gqa_sliding_pad", "unseen_mha_custom_layers"] {
            let c = fixtures().join("text_encoder").join(case);
            let out = dir.join(format!("{case}-{backend}.safetensors"));
            let o = text_encoder(&c.join("text_encoder"), &c.join("inputs.safetensors"), &out, backend);
            assert!(o.status.success(), "{case} {backend}: {}", String::from_utf8_lossy(&o.stderr));
            let rel = rel_l2(&read(&out, "last_hidden_state"), &read(&c.join("outputs.safetensors"), "last_hidden_state"));
            assert!(rel <= 1e-5, "{case} {backend}: rel L2 {rel:e}");
        }
    }
}

#[test]
fn debug_encode_prompt_matches_diffusers() {
    let dir = scratch("prompt");
    // cases.json: "non_ascii" — default instruction, lower-casing, explicit negative prompt.
    let out = dir.join("non_ascii.safetensors");
    let o = bin()
        .args(["debug", "encode-prompt", "--model"])
        .arg(fixtures().join("prompt/pipeline"))
        .args(["--prompt", "Un café ☕ à Zürich — 東京の夜 🌃, naïve façade", "--negative-prompt", "flou, déformé ✗"])
        .arg("--output")
        .arg(&out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = fixtures().join("prompt/non_ascii.safetensors");
    for name in ["prompt_embeds", "negative_prompt_embeds"] {
        let rel = rel_l2(&read(&out, name), &read(&want, name));
        assert!(rel <= 1e-5, "{name}: rel L2 {rel:e}");
    }
    for name in ["prompt_attention_mask", "negative_prompt_attention_mask"] {
        assert_eq!(read(&out, name), read(&want, name), "{name}");
    }
    // "long_truncated" with the image wording off: the warning says how many were dropped.
    let out = dir.join("long.safetensors");
    let long = vec!["a small red circle moves slowly to the left on a dark blue background"; 40].join(", ");
    let o = bin()
        .args(["debug", "encode-prompt", "--model"])
        .arg(fixtures().join("prompt/pipeline"))
        .args(["--prompt", &long, "--motion-score", "10", "--negative-prompt", &long, "--output"])
        .arg(&out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: prompt 1 is too long:") && err.contains("tokens past the budget of 299 were dropped"), "{err}");
    let want = fixtures().join("prompt/long_truncated.safetensors");
    let rel = rel_l2(&read(&out, "prompt_embeds"), &read(&want, "prompt_embeds"));
    assert!(rel <= 1e-5, "long prompt: rel L2 {rel:e}");
}

#[test]
fn bad_text_inputs_are_refused_without_output() {
    let dir = scratch("bad");
    let case = fixtures().join("text_encoder/gqa_sliding_pad");
    let te = case.join("text_encoder");
    let out = dir.join("out.safetensors");

    // Token id beyond the vocabulary (97).
    let bad_ids = dir.join("bad_ids.safetensors");
    let ids: Vec<i64> = vec![2, 5, 500, 0];
    let mask: Vec<i64> = vec![1, 1, 1, 0];
    write_i64(&bad_ids, &[("input_ids", &ids, &[1, 4]), ("attention_mask", &mask, &[1, 4])]);
    expect_failure(&text_encoder(&te, &bad_ids, &out, "cpu"), &out, &["input_ids[0][2] = 500", "vocabulary of 97"]);

    // Mask values other than 0/1; shapes that disagree; wrong rank; missing tensor.
    let bad_mask = dir.join("bad_mask.safetensors");
    write_i64(&bad_mask, &[("input_ids", &[2, 5, 6, 0], &[1, 4]), ("attention_mask", &[1, 2, 1, 0], &[1, 4])]);
    expect_failure(&text_encoder(&te, &bad_mask, &out, "cpu"), &out, &["attention_mask[1] = 2"]);
    let bad_shape = dir.join("bad_shape.safetensors");
    write_i64(&bad_shape, &[("input_ids", &[2, 5, 6, 0], &[1, 4]), ("attention_mask", &[1, 1, 1], &[1, 3])]);
    expect_failure(&text_encoder(&te, &bad_shape, &out, "cpu"), &out, &["attention_mask has shape [1, 3]"]);
    let bad_rank = dir.join("bad_rank.safetensors");
    write_i64(&bad_rank, &[("input_ids", &[2, 5, 6, 0], &[4])]);
    expect_failure(&text_encoder(&te, &bad_rank, &out, "cpu"), &out, &["input_ids", "expected [batch, length]"]);
    let no_ids = dir.join("no_ids.safetensors");
    write_i64(&no_ids, &[("attention_mask", &[1, 1], &[1, 2])]);
    expect_failure(&text_encoder(&te, &no_ids, &out, "cpu"), &out, &["missing tensor `input_ids`"]);

    // A folder without weights; a config of another model family.
    let empty = dir.join("empty_te");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(te.join("config.json"), empty.join("config.json")).unwrap();
    expect_failure(&text_encoder(&empty, &case.join("inputs.safetensors"), &out, "cpu"), &out, &["no weights"]);
    let llama = dir.join("llama_te");
    std::fs::create_dir_all(&llama).unwrap();
    std::fs::write(llama.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    expect_failure(&text_encoder(&llama, &case.join("inputs.safetensors"), &out, "cpu"), &out, &["model_type `llama`"]);
}

fn encode_prompt(model: &Path, out: &Path) -> Output {
    bin()
        .args(["debug", "encode-prompt", "--model"])
        .arg(model)
        .args(["--prompt", "a red ball", "--output"])
        .arg(out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap()
}

/// A pipeline copy with one file replaced or removed.
fn broken_pipeline(dir: &Path, name: &str, file: &str, contents: Option<&str>) -> PathBuf {
    let p = dir.join(name);
    for sub in ["tokenizer", "text_encoder"] {
        let from = fixtures().join("prompt/pipeline").join(sub);
        std::fs::create_dir_all(p.join(sub)).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), p.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(fixtures().join("prompt/pipeline/model_index.json"), p.join("model_index.json")).unwrap();
    match contents {
        Some(c) => std::fs::write(p.join(file), c).unwrap(),
        None => std::fs::remove_file(p.join(file)).unwrap(),
    }
    p
}

#[test]
fn bad_tokenizers_are_refused_without_output() {
    let dir = scratch("badtok");
    let out = dir.join("out.safetensors");
    let p = broken_pipeline(&dir, "no_tok", "tokenizer/tokenizer.json", None);
    expect_failure(&encode_prompt(&p, &out), &out, &["tokenizer", "no tokenizer.json"]);
    let p = broken_pipeline(&dir, "corrupt_tok", "tokenizer/tokenizer.json", Some("{\"version\": \"1.0\", \"model\": 12"));
    expect_failure(&encode_prompt(&p, &out), &out, &["tokenizer.json", "not a valid tokenizer.json"]);
    let p = broken_pipeline(&dir, "bad_cfg", "tokenizer/tokenizer_config.json", Some("{ nope"));
    expect_failure(&encode_prompt(&p, &out), &out, &["tokenizer_config.json", "invalid JSON"]);
    let p = broken_pipeline(&dir, "no_pad", "tokenizer/tokenizer_config.json", Some(r#"{"pad_token": "<nothing>", "add_bos_token": true}"#));
    expect_failure(&encode_prompt(&p, &out), &out, &["pad_token `<nothing>`", "not in the vocabulary"]);
    // A tokenizer bigger than the encoder's embedding table: the pair does not belong together.
    let cfg = std::fs::read_to_string(fixtures().join("prompt/pipeline/text_encoder/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["vocab_size"] = serde_json::json!(300);
    let p = broken_pipeline(&dir, "small_vocab", "text_encoder/config.json", Some(&v.to_string()));
    expect_failure(&encode_prompt(&p, &out), &out, &["tokens but", "embeds only 300", "do not belong together"]);
    let p = broken_pipeline(&dir, "no_te", "text_encoder/model.safetensors", None);
    expect_failure(&encode_prompt(&p, &out), &out, &["text_encoder", "no weights"]);
    // Flags.
    let o = bin()
        .args(["debug", "encode-prompt", "--model"])
        .arg(fixtures().join("prompt/pipeline"))
        .args(["--prompt", "x", "--motion-score", "-3", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &out, &["--motion-score -3"]);
    let o = bin()
        .args(["debug", "encode-prompt", "--model"])
        .arg(fixtures().join("prompt/pipeline"))
        .args(["--prompt", "x", "--instruction", "poem", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &out, &["--instruction `poem`"]);
}

