//! `sana-video generate` end to end on the small random pipelines of tests/fixtures/pipeline:
//! the CLI reproduces diffusers' frames and latents with injected noise, writes MP4 (checked
//! with ffprobe), GIF, PNG frames and safetensors, is reproducible for a seed, leaves nothing
//! behind on Ctrl-C, and refuses bad input before any work.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn wan() -> String {
    fixtures().join("pipeline/wan").to_string_lossy().to_string()
}

const DEFAULTS: &[(&str, &str)] = &[
    ("--backend", "cpu"),
    ("--prompt", "a red ball rolls to the left"),
    ("--height", "32"),
    ("--width", "64"),
    ("--frames", "9"),
    ("--steps", "2"),
    ("--cfg-scale", "3"),
    ("--resolution-binning", "off"),
];

/// `generate` on the small Wan pipeline with DEFAULTS, each replaced by `over` when named there.
fn gen(out: &Path, over: &[(&str, &str)]) -> Command {
    let mut c = bin();
    c.args(["generate", "--model", &wan(), "--quiet"]);
    for (k, v) in DEFAULTS {
        if !over.iter().any(|(o, _)| o == k) {
            c.args([k, v]);
        }
    }
    for (k, v) in over {
        c.args([k, v]);
    }
    c.arg("-o").arg(out);
    c
}

fn base(out: &Path) -> Command {
    gen(out, &[])
}

#[test]
fn cli_matches_diffusers_with_injected_noise() {
    let dir = scratch("gen-parity");
    let fx = fixtures().join("pipeline/t2v_dpm.safetensors");
    let noise = dir.join("noise.safetensors");
    let init = read(&fx, "init_latents");
    let init: Vec<f32> = init.iter().map(|&v| v as f32).collect();
    write_f32(&noise, "latents", &init, &[1, 4, 3, 4, 8]);
    let out = dir.join("out.safetensors");
    let o = bin()
        .args(["generate", "--model", &wan(), "--backend", "cpu", "--prompt", "a red ball rolls to the left",
            "--negative-prompt", "blurry, distorted, static", "--height", "32", "--width", "64", "--frames", "9",
            "--steps", "4", "--cfg-scale", "4.5", "--sampler", "dpm++", "--resolution-binning", "off", "--init-noise"])
        .arg(&noise)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("time:") && err.contains("memory:"), "summary expected: {err}");
    let lat = rel_l2(&read(&out, "latents"), &read(&fx, "final_latents"));
    let (a, b) = (read(&out, "frames"), read(&fx, "frames"));
    let mse = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64;
    let psnr = 10.0 * (1.0 / mse).log10();
    assert!(lat <= 1e-4, "latents rel L2 {lat:.3e}");
    assert!(psnr >= 45.0, "frames PSNR {psnr:.1} dB");
    // Prompt, seed and settings travel in the file's metadata.
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta.get("prompt").map(String::as_str), Some("a red ball rolls to the left"));
    assert_eq!(meta.get("steps").map(String::as_str), Some("4"));
}

#[test]
fn mp4_gif_png_outputs() {
    let dir = scratch("gen-formats");
    let mp4 = dir.join("clip.mp4");
    let o = base(&mp4).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = probe_stream(&mp4);
    for want in ["codec_name=h264", "width=64", "height=32", "r_frame_rate=16/1", "nb_read_frames=9"] {
        assert!(text.contains(want), "ffprobe: expected {want} in\n{text}");
    }
    let tags = ffprobe(&mp4, &["-show_entries", "format_tags", "-of", "default=nw=1"]);
    assert!(tags.contains("prompt: a red ball rolls to the left") && tags.contains("seed: 42"), "MP4 tags: {tags}");
    // Same seed, same bytes.
    let again = dir.join("again.mp4");
    assert!(base(&again).output().unwrap().status.success());
    assert_eq!(std::fs::read(&mp4).unwrap(), std::fs::read(&again).unwrap(), "same seed, different MP4 bytes");

    // Encoding quality: the decoded MP4 against the same run's exact frames (luma PSNR; the
    // random-weight fixture makes noise-like frames, the hardest case for H.264).
    let exact = dir.join("exact.safetensors");
    assert!(base(&exact).output().unwrap().status.success());
    let psnr = mp4_luma_psnr(&mp4, &read(&exact, "frames"));
    println!("MP4 luma PSNR {psnr:.1} dB");
    assert!(psnr >= 32.0, "MP4 luma PSNR {psnr:.1} dB (measured 33.5 dB with QP <= 22)");

    let gif = dir.join("clip.gif");
    let o = gen(&gif, &[("--fps", "8")]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&gif).unwrap().starts_with(b"GIF89a"));

    let frames = dir.join("frames/");
    let o = base(&frames).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = std::fs::read_dir(&frames).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png")).count();
    assert_eq!(n, 9, "PNG frame count");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("partial")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn ctrl_c_leaves_no_output() {
    let dir = scratch("gen-interrupt");
    let out = dir.join("clip.mp4");
    let mut child = gen(&out, &[("--steps", "1000"), ("--height", "128"), ("--width", "128"), ("--frames", "17")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until denoising runs, then interrupt.
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "finished before the interrupt; raise --steps");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "exit code after Ctrl-C; stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(start.elapsed().as_secs() < 60, "took too long to stop");
    assert!(!out.exists(), "no output after an interrupt");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
    assert!(left.is_empty(), "left behind: {:?}", left.iter().map(|e| e.file_name()).collect::<Vec<_>>());
}

/// A memory refusal for an unquantised model says when FP8 weights would fit, and how to make
/// them: just under the built-in model's resident plan on the CPU backend (0.33 GB), where its
/// DiT's 24 MB of f32 weights would become 10 MB.
#[test]
fn memory_refusal_suggests_fp8_weights() {
    let dir = scratch("gen-fp8-hint");
    let out = dir.join("clip.mp4");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--prompt", "a red circle", "--keep-resident", "--max-memory", "0.32", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &out, &["needs about", "FP8 weights (sana-video quantize --format fp8 --model builtin --output NEW_DIR"]);
}

#[test]
fn bad_input_is_refused_before_work() {
    let dir = scratch("gen-errors");
    let out = dir.join("clip.mp4");
    let run = |over: &[&str], out: &Path| {
        let pairs: Vec<(&str, &str)> = over.chunks(2).map(|p| (p[0], p[1])).collect();
        gen(out, &pairs).output().unwrap()
    };
    expect_failure(&run(&["--frames", "10"], &out), &out, &["--frames 10", "9 or 13"]);
    expect_failure(&run(&["--frames", "0"], &out), &out, &["--frames 0"]);
    expect_failure(&run(&["--height", "40"], &out), &out, &["--height", "multiples of 16", "32 or 48"]);
    expect_failure(&run(&["--width", "0"], &out), &out, &["--width", "positive"]);
    expect_failure(&run(&["--width", "-64"], &out), &out, &["--width -64"]);
    expect_failure(&run(&["--sampler", "ddim"], &out), &out, &["--sampler ddim", "unipc"]);
    expect_failure(&run(&["--steps", "0"], &out), &out, &["--steps"]);
    expect_failure(&run(&["--cfg-scale", "nan"], &out), &out, &["--cfg-scale"]);
    expect_failure(&run(&["--resolution-binning", "maybe"], &out), &out, &["--resolution-binning maybe"]);
    expect_failure(&run(&["--backend", "tpu"], &out), &out, &["--backend tpu"]);
    expect_failure(&run(&["--max-memory", "0.0001"], &out), &out, &["needs about", "--max-memory"]);
    let missing = dir.join("nope/clip.mp4");
    expect_failure(&run(&[], &missing), &missing, &["does not exist"]);
    let webm = dir.join("clip.webm");
    expect_failure(&run(&[], &webm), &webm, &[".webm"]);
    let not_image = dir.join("not.png");
    std::fs::write(&not_image, b"not a png").unwrap();
    expect_failure(&run(&["--image", not_image.to_str().unwrap()], &out), &out, &["--image", "not.png"]);
    expect_failure(&run(&["--image", "/no/such/image.png"], &out), &out, &["--image /no/such/image.png"]);
    let noise = dir.join("noise.safetensors");
    write_f32(&noise, "latents", &[0.0; 8], &[1, 2, 2, 2]);
    expect_failure(&run(&["--init-noise", noise.to_str().unwrap()], &out), &out, &["--init-noise", "[1, 4, 3, 4, 8]"]);
    write_f32(&noise, "noise", &[0.0; 8], &[1, 2, 2, 2]);
    expect_failure(&run(&["--init-noise", noise.to_str().unwrap()], &out), &out, &["--init-noise", "latents"]);
    let o = bin().args(["generate", "--model", "/no/such/model", "--prompt", "x", "-o"]).arg(&out).output().unwrap();
    expect_failure(&o, &out, &["/no/such/model"]);
    let o = bin().args(["generate", "--model", &wan(), "-o"]).arg(&out).output().unwrap();
    expect_failure(&o, &out, &["--prompt"]);
    // An odd output size cannot be H.264 4:2:0; binning resizes back to the asked size.
    let o = run(&["--resolution-binning", "on", "--height", "33"], &out);
    expect_failure(&o, &out, &["even"]);
}

/// `--resolution-binning` defaults to auto: on for a released-style transformer
/// (sample_size 30 has the 480p bins), so 72x40 is generated at 832x480 and cropped back.
#[test]
fn binning_is_automatic_for_released_sample_sizes() {
    let dir = scratch("gen-auto-binning");
    let out = dir.join("clip.safetensors");
    let mut c = bin();
    c.args(["generate", "--model", &wan(), "--quiet", "--backend", "cpu", "--prompt", "an orange circle", "--height", "40",
        "--width", "72", "--frames", "1", "--steps", "1", "-o"])
        .arg(&out);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("frames").unwrap().shape(), &[1, 40, 72, 3]);
    assert_eq!(st.tensor("latents").unwrap().shape(), &[1, 4, 1, 60, 104], "generated at the 832x480 bin");
}
