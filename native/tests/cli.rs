//! The `sana-video` binary end to end: the DiT runner reproduces the diffusers fixture,
//! `inspect` reports, and bad input gives a clear error, a non-zero exit and no output file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sana-video"))
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dit").join(case)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sana-video-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_sample(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("sample").unwrap();
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// `debug transformer` with `--model model` on the inputs of fixture `case`.
fn debug_transformer(model: &Path, case: &str, backend: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args(["debug", "transformer", "--model"])
        .arg(model)
        .arg("--inputs")
        .arg(fixture(case).join("inputs.safetensors"))
        .arg("--output")
        .arg(out)
        .args(["--backend", backend])
        .args(extra)
        .output()
        .unwrap()
}

fn run_transformer(case: &str, backend: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    debug_transformer(&fixture(case).join("transformer"), case, backend, out, extra)
}

#[test]
fn debug_transformer_matches_diffusers_on_cpu_and_wgpu() {
    let dir = scratch("parity");
    for backend in ["cpu", "wgpu"] {
        for case in ["p122_b2_mask", "unseen_p111_pertoken"] {
            let out = dir.join(format!("{case}-{backend}.safetensors"));
            let o = run_transformer(case, backend, &out, &[]);
            assert!(o.status.success(), "{case} {backend}: {}", String::from_utf8_lossy(&o.stderr));
            let expected = read_sample(&fixture(case).join("outputs.safetensors"));
            let rel = rel_l2(&read_sample(&out), &expected);
            assert!(rel <= 1e-5, "{case} on {backend}: rel L2 {rel:.3e}");
        }
    }
    // A pipeline folder works as --model too (the runner finds transformer/).
    let out = dir.join("pipeline.safetensors");
    let o = debug_transformer(&fixture("p122_b2_mask"), "p122_b2_mask", "cpu", &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn lower_precision_dtypes_run_close_to_reference() {
    let dir = scratch("dtypes");
    let expected = read_sample(&fixture("p122_b2_mask").join("outputs.safetensors"));
    for (dtype, tol) in [("f16", 1e-2), ("bf16", 5e-2)] {
        let out = dir.join(format!("{dtype}.safetensors"));
        let o = run_transformer("p122_b2_mask", "cpu", &out, &["--dtype", dtype]);
        assert!(o.status.success(), "{dtype}: {}", String::from_utf8_lossy(&o.stderr));
        let rel = rel_l2(&read_sample(&out), &expected);
        println!("{dtype}: rel L2 {rel:.3e}");
        assert!(rel < tol, "{dtype}: rel L2 {rel:.3e}");
    }
}

fn expect_failure(o: &std::process::Output, parts: &[&str]) {
    assert!(!o.status.success(), "should have failed");
    let err = String::from_utf8_lossy(&o.stderr);
    for p in parts {
        assert!(err.contains(p), "stderr {err:?} should contain {p:?}");
    }
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn bad_input_is_refused_without_output() {
    let dir = scratch("bad");
    let out = dir.join("out.safetensors");

    // Input tensors with the wrong channel count.
    let inputs = dir.join("bad-inputs.safetensors");
    let src = std::fs::read(fixture("p122_b2_mask").join("inputs.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let x = st.tensor("hidden_states").unwrap();
    let shape = x.shape().to_vec(); // [2, 4, 3, 6, 10]
    let bad = safetensors::tensor::TensorView::new(x.dtype(), vec![shape[0], 2, shape[2] * 2, shape[3], shape[4]], x.data()).unwrap();
    views.retain(|(n, _)| n != "hidden_states");
    views.push(("hidden_states".into(), bad));
    std::fs::write(&inputs, safetensors::serialize(views, None).unwrap()).unwrap();
    let case = fixture("p122_b2_mask");
    let o = bin()
        .args(["debug", "transformer", "--backend", "cpu", "--model"])
        .arg(case.join("transformer"))
        .arg("--inputs")
        .arg(&inputs)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &["hidden_states", "channels"]);
    assert!(!out.exists());

    // Missing inputs file, unknown flag values, missing model folder.
    let o = run_transformer("p122_b2_mask", "cpu", &out, &["--dtype", "f8"]);
    expect_failure(&o, &["--dtype"]);
    let o = run_transformer("p122_b2_mask", "metal", &out, &[]);
    expect_failure(&o, &["--backend"]);
    let o = bin()
        .args(["debug", "transformer", "--model", "/nonexistent/model", "--inputs"])
        .arg(case.join("inputs.safetensors"))
        .arg("--output")
        .arg(&out)
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    expect_failure(&o, &["/nonexistent/model"]);
    let o = bin()
        .args(["debug", "transformer", "--model"])
        .arg(case.join("transformer"))
        .args(["--inputs", "/nonexistent/in.safetensors", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &["/nonexistent/in.safetensors"]);
    let o = bin().args(["debug", "transformer", "--bogus", "1"]).output().unwrap();
    expect_failure(&o, &["--bogus"]);
    // An unknown value of an environment switch is named, not ignored.
    let o = bin()
        .args(["debug", "transformer", "--backend", "cpu", "--model"])
        .arg(case.join("transformer"))
        .arg("--inputs")
        .arg(case.join("inputs.safetensors"))
        .arg("--output")
        .arg(&out)
        .env("SANA_FP8_ACTIVATIONS", "sometimes")
        .output()
        .unwrap();
    expect_failure(&o, &["SANA_FP8_ACTIVATIONS=sometimes"]);
    assert!(!out.exists());
    // An output folder that does not exist is refused before any compute.
    let o = run_transformer("p122_b2_mask", "cpu", Path::new("/nonexistent/dir/out.safetensors"), &[]);
    expect_failure(&o, &["/nonexistent/dir"]);
}

#[test]
fn inspect_reports_components_and_parameters() {
    let o = bin().arg("inspect").arg(fixture("p122_single_frame_sharded")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for part in ["[transformer]", "SanaVideoTransformer3DModel", "parameters:", "6 files", "F16", "all expected tensors present"] {
        assert!(text.contains(part), "inspect output should contain {part:?}:\n{text}");
    }
    let o = bin().args(["inspect", "/nonexistent/x"]).output().unwrap();
    expect_failure(&o, &["/nonexistent/x"]);
}

#[test]
fn inspect_finds_hugging_face_cache_entries() {
    let root = scratch("hfcache");
    let entry = root.join("hub/models--acme--tiny-sana");
    let snap = entry.join("snapshots/abc123");
    let src = fixture("p122_b2_mask");
    std::fs::create_dir_all(snap.join("transformer")).unwrap();
    std::fs::copy(src.join("model_index.json"), snap.join("model_index.json")).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(src.join("transformer").join(f), snap.join("transformer").join(f)).unwrap();
    }
    std::fs::create_dir_all(entry.join("refs")).unwrap();
    std::fs::write(entry.join("refs/main"), "abc123").unwrap();
    // By cache folder, and by repo id through HF_HOME.
    let o = bin().arg("inspect").arg(&entry).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("snapshots/abc123"));
    let o = bin().args(["inspect", "acme/tiny-sana"]).env("HF_HOME", &root).env_remove("HF_HUB_CACHE").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SanaVideoTransformer3DModel"));
}

/// `quantize`: a pipeline folder in, a complete FP8 / NVFP4 folder out that `debug
/// transformer` runs close to the f32 reference; bad requests refused with nothing written.
#[test]
fn quantize_writes_a_loadable_folder_and_refuses_bad_requests() {
    let dir = scratch("quantize");
    let case = fixture("p122_b2_mask");
    let expected = read_sample(&case.join("outputs.safetensors"));
    for (format, bound) in [("fp8", 0.04), ("nvfp4", 0.12)] {
        let out = dir.join(format);
        let o = bin().args(["quantize", "--format", format, "--model"]).arg(&case).arg("--output").arg(&out).output().unwrap();
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("in {format}")));
        assert!(out.join("model_index.json").exists() && out.join("transformer/config.json").exists());
        let res = dir.join(format!("{format}.safetensors"));
        let o = debug_transformer(&out.join("transformer"), "p122_b2_mask", "cpu", &res, &[]);
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
        let rel = rel_l2(&read_sample(&res), &expected);
        assert!(rel < bound, "{format}: rel L2 {rel:.3e}");
    }
    let refuse = |args: &[&str], model: &Path, output: &Path, needle: &str| {
        let o = bin().args(args).arg("--model").arg(model).arg("--output").arg(output).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success() && err.contains(needle), "{args:?}: {err}");
    };
    // Output exists; unknown format; input already quantised; not a model folder.
    refuse(&["quantize", "--format", "fp8"], &case, &dir.join("fp8"), "already exists");
    refuse(&["quantize", "--format", "int3"], &case, &dir.join("x1"), "--format int3");
    refuse(&["quantize", "--format", "fp8"], &dir.join("fp8"), &dir.join("x2"), "already quantised");
    refuse(&["quantize", "--format", "fp8"], &dir, &dir.join("x3"), "not a diffusers folder");
    for x in ["x1", "x2", "x3"] {
        assert!(!dir.join(x).exists(), "{x}: partial output left behind");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary folders left: {leftovers:?}");
}

/// ComfyUI quantisation that is not what it claims is refused by name, not misread: a layer
/// declared NVFP4 whose weight is plain f32, and a format this build does not read.
#[test]
fn comfyui_quantisation_problems_are_refused_with_a_clear_message() {
    let src = fixture("p122_b2_mask").join("transformer");
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (case, format, wants) in [
        ("comfy-nvfp4-f32", "nvfp4", &["transformer_blocks.0.attn1.to_q.weight", "(nvfp4) has shape"][..]),
        ("comfy-mxfp8", "mxfp8", &["transformer_blocks.0.attn1.to_q", "ComfyUI quantisation `mxfp8`"][..]),
    ] {
        let dir = scratch(case).join("transformer");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
        let meta = std::collections::HashMap::from([(
            "_quantization_metadata".to_string(),
            format!(r#"{{"format_version": "1.0", "layers": {{"transformer_blocks.0.attn1.to_q": {{"format": "{format}"}}}}}}"#),
        )]);
        std::fs::write(dir.join("diffusion_pytorch_model.safetensors"), safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        let out = dir.join("out.safetensors");
        let o = debug_transformer(&dir, "p122_b2_mask", "cpu", &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && wants.iter().all(|w| err.contains(w)), "{case}: {err}");
        assert!(!out.exists(), "{case}: partial output");
    }
}

/// A generation from FP8 weights says how its quantised layers run: W8A16 by default on a
/// device without FP8 tensor cores, W8A8 (emulated there) when asked.
#[test]
fn quantised_generation_reports_its_weights() {
    let dir = scratch("quantised-generate");
    let model = dir.join("fp8");
    let o = bin().args(["quantize", "--format", "fp8", "--model", "builtin", "--output"]).arg(&model).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (mode, want) in [(None, ["FP8 W8A16 layers", ""]), (Some("on"), ["FP8 W8A8", "(W8A8 emulated)"])] {
        let out = dir.join(format!("clip-{}.mp4", mode.unwrap_or("default")));
        let mut cmd = bin();
        cmd.args(["generate", "--backend", "cpu", "--steps", "2", "--frames", "5", "--prompt", "a red circle", "--model"]).arg(&model).arg("-o").arg(&out);
        if let Some(m) = mode {
            cmd.env("SANA_FP8_ACTIVATIONS", m);
        } else {
            cmd.env_remove("SANA_FP8_ACTIVATIONS");
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let line = err.lines().find(|l| l.starts_with("quantised weights: ")).unwrap_or_else(|| panic!("no summary line in {err}"));
        for w in want {
            assert!(line.contains(w), "{mode:?}: {line:?} should contain {w:?}");
        }
        if mode.is_none() {
            assert!(!line.contains("W8A8"), "W8A8 without FP8 tensor cores by default: {line}");
        }
        assert!(out.exists());
    }
    // NVFP4 weights: W4A16 by default without FP4 tensor cores, W4A4 (emulated) when asked;
    // an unknown value is refused, naming the variable.
    let model = dir.join("nvfp4");
    let o = bin().args(["quantize", "--format", "nvfp4", "--model", "builtin", "--output"]).arg(&model).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (mode, want, absent) in [("auto", "NVFP4 W4A16", "W4A4"), ("on", "NVFP4 W4A4 (emulated)", "")] {
        let out = dir.join(format!("clip-nvfp4-{mode}.mp4"));
        let o = bin()
            .args(["generate", "--backend", "cpu", "--steps", "2", "--frames", "5", "--prompt", "a red circle", "--model"])
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .env("SANA_NVFP4_ACTIVATIONS", mode)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let line = err.lines().find(|l| l.starts_with("quantised weights: ")).unwrap_or_else(|| panic!("no summary line in {err}"));
        assert!(line.contains(want), "{mode}: {line:?} should contain {want:?}");
        assert!(absent.is_empty() || !line.contains(absent), "{mode}: {line:?} should not contain {absent:?}");
        assert!(out.exists());
    }
    let out = dir.join("clip-nvfp4-bad.mp4");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--steps", "2", "--frames", "5", "--prompt", "a red circle", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .env("SANA_NVFP4_ACTIVATIONS", "sometimes")
        .output()
        .unwrap();
    expect_failure(&o, &["SANA_NVFP4_ACTIVATIONS=sometimes"]);
    assert!(!out.exists());
}
