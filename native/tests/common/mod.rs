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

/// `ffprobe -v error ARGS PATH` (e.g. `-show_entries stream=width -of default=nw=1`): its
/// stdout, after checking it ran.
pub fn ffprobe(path: &Path, args: &[&str]) -> String {
    let o = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe (apt install ffmpeg) is needed for the MP4 checks");
    assert!(o.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The video stream's codec, size, rate and decoded frame count, as `key=value` lines.
pub fn probe_stream(path: &Path) -> String {
    ffprobe(path, &["-count_frames", "-select_streams", "v:0", "-show_entries",
        "stream=codec_name,width,height,nb_read_frames,r_frame_rate", "-of", "default=nw=1"])
}

/// Luma PSNR (dB) of an MP4 as ffmpeg decodes it against the exact frames [T,H,W,3] in [0,1]
/// of the same run (8-bit rounded, as the encoder saw them).
pub fn mp4_luma_psnr(mp4: &Path, frames: &[f64]) -> f64 {
    let rgb = mp4.with_extension("rgb");
    let st = Command::new("ffmpeg").args(["-v", "error", "-y", "-i"]).arg(mp4).args(["-f", "rawvideo", "-pix_fmt", "rgb24"]).arg(&rgb).status().unwrap();
    assert!(st.success(), "ffmpeg could not decode {}", mp4.display());
    let decoded = std::fs::read(&rgb).unwrap();
    assert_eq!(decoded.len(), frames.len(), "decoded size of {}", mp4.display());
    let luma = |p: &[f64]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let dec: Vec<f64> = decoded.iter().map(|&v| v as f64).collect();
    let want: Vec<f64> = frames.iter().map(|v| (v * 255.0).round()).collect();
    let mse = dec.chunks(3).zip(want.chunks(3)).map(|(a, b)| (luma(a) - luma(b)).powi(2)).sum::<f64>() / (dec.len() / 3) as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
