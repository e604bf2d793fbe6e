//! Helpers shared by the CLI tests: the binary, scratch folders, reading outputs back,
//! error metrics and the "clear failure, no output" check.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sana-video"))
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fresh folder under the temp dir, unique per test process and name.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sana-video-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tensor of a safetensors file as f64 (f32 and i64 tensors).
pub fn read(path: &Path, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap_or_else(|_| panic!("{}: no tensor {name}", path.display()));
    match t.dtype() {
        safetensors::Dtype::F32 => t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        safetensors::Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y.powi(2)).sum();
    (num / den).sqrt()
}

/// The command failed, its message names every part, it did not panic, and `out` was not written.
pub fn expect_failure(o: &Output, out: &Path, parts: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    for p in parts {
        assert!(err.contains(p), "stderr should mention `{p}`: {err}");
    }
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(!out.exists(), "no output file on failure");
}

pub fn write_f32(path: &Path, name: &str, data: &[f32], shape: &[usize]) {
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), bytemuck::cast_slice(data)).unwrap();
    std::fs::write(path, safetensors::serialize(vec![(name.to_string(), view)], None).unwrap()).unwrap();
}

pub fn write_i64(path: &Path, tensors: &[(&str, &[i64], &[usize])]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s)| {
            let bytes: &[u8] = bytemuck::cast_slice(d);
            (n.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I64, s.to_vec(), bytes).unwrap())
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}
