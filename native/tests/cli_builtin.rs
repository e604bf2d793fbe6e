//! The built-in model (builtin-model/, compiled into the binary): `generate` uses it when no
//! `--model` is given and writes a real MP4 of its size and length; `inspect builtin`
//! describes it; `evaluate` generates and scores clips and refuses prompt files it cannot judge.

mod common;

use common::*;

#[test]
fn generate_without_model_uses_the_builtin_model() {
    let dir = scratch("builtin-gen");
    let out = dir.join("clip.mp4");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--steps", "2", "--prompt", "a large red circle moves slowly to the left on a dark blue background", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "generate failed: {}", String::from_utf8_lossy(&o.stderr));
    let text = probe_stream(&out);
    for want in ["width=128", "height=128", "nb_read_frames=17"] {
        assert!(text.contains(want), "ffprobe: expected {want} in\n{text}");
    }
    let tags = ffprobe(&out, &["-show_entries", "format_tags", "-of", "default=nw=1"]);
    assert!(tags.contains("model: builtin"), "metadata names the model: {tags}");
}

#[test]
fn image_to_video_with_the_builtin_model() {
    let dir = scratch("builtin-i2v");
    let out = dir.join("clip.safetensors");
    let image = fixtures().join("builtin/builtin_i2v.png");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--steps", "2", "--prompt", "On a black background, a medium yellow square moves quickly upward", "--image"])
        .arg(&image)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "generate --image failed: {}", String::from_utf8_lossy(&o.stderr));
    let frames = read(&out, "frames");
    assert_eq!(frames.len(), 17 * 128 * 128 * 3, "17 frames of 128x128 RGB");
    // Frame 0 is the image through the VAE. Measured 29.1 dB (run 4's model); the same
    // prompt without --image gives 13.1 dB against it.
    let png = image::open(&image).unwrap().to_rgb8();
    let want: Vec<f64> = png.as_raw().iter().map(|&v| v as f64 / 255.0).collect();
    let got = &frames[..want.len()];
    let mse = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / want.len() as f64;
    let psnr = 10.0 * (1.0 / mse).log10();
    eprintln!("first frame vs the image: {psnr:.1} dB");
    assert!(psnr >= 22.0, "first frame vs the image: {psnr:.1} dB");
}

#[test]
fn inspect_describes_the_builtin_model() {
    let o = bin().args(["inspect", "builtin"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for want in ["SanaVideoTransformer3DModel", "Gemma2Model", "AutoencoderKLWan"] {
        assert!(text.contains(want), "inspect builtin: expected {want} in\n{text}");
    }
}

/// `sana-video evaluate --backend cpu --quiet --prompts FILE ARGS...` must succeed; its JSON summary.
fn evaluate(prompts: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = bin().args(["evaluate", "--backend", "cpu", "--quiet", "--prompts"]).arg(prompts).args(args).output().unwrap();
    assert!(o.status.success(), "evaluate failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("a JSON summary on stdout")
}

#[test]
fn evaluate_scores_generated_clips() {
    let dir = scratch("builtin-eval");
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, "# two prompts\na large red circle moves slowly to the left on a dark blue background\n\ntwo objects: a small green square rises quickly, and a medium yellow star circles slowly, on a black background\n").unwrap();
    let report = dir.join("report.json");
    let summary = evaluate(&prompts, &["--steps", "2", "--seeds", "5", "--report", report.to_str().unwrap()]);
    assert_eq!(summary["clips"], 2);
    assert_eq!(summary["objects"], 3, "one object, then two");
    for k in ["colour_accuracy", "motion_accuracy", "consistency"] {
        let v = summary[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    let full: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(full["clips"].as_array().unwrap().len(), 2);
    assert_eq!(full["clips"][1]["objects"][1]["motion"], "circle");
}

#[test]
fn evaluate_refuses_prompts_it_cannot_judge() {
    let dir = scratch("builtin-eval-bad");
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, "a large red circle moves slowly to the left on a dark blue background\na cat sleeping on a sofa\n").unwrap();
    let o = bin().args(["evaluate", "--backend", "cpu", "--prompts"]).arg(&prompts).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("line 2"), "names the line: {err}");
    let o = bin().args(["evaluate", "--prompts", "/nonexistent/prompts.txt"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/prompts.txt"));
    let good = dir.join("good.txt");
    std::fs::write(&good, "a large red circle moves slowly to the left on a dark blue background\n").unwrap();
    let o = bin().args(["evaluate", "--prompts"]).arg(&good).args(["--seeds", "1,x"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seeds"));
}

/// The built-in model's quality regression test (issue 6): the first 12 held-out prompts,
/// seed 1, the model's 20 steps and guidance 5, CPU. The floors sit just under what this checkpoint measured
/// with exactly these settings (BENCHMARKS.md, "Built-in model", "Quality: the evaluator"): a
/// retrained or broken model, or a pipeline change that hurts the output, fails here.
#[test]
fn builtin_model_quality_regression() {
    const PROMPTS: usize = 12;
    const MIN_COLOUR: f64 = 0.90; // run 6 at CFG 5 (the default since 2026-11-28) and at CFG 6: measured 20 / 20 = 1.00
    const MIN_MOTION: f64 = 0.85; // run 6 at CFG 5 and at CFG 6: measured 19 / 20 = 0.95
    let dir = scratch("builtin-quality");
    let all = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/dataset/heldout_prompts.txt")).unwrap();
    let first: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).take(PROMPTS).collect();
    assert_eq!(first.len(), PROMPTS);
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, first.join("\n")).unwrap();
    let summary = evaluate(&prompts, &["--steps", "20", "--seeds", "1"]);
    let colour = summary["colour_accuracy"].as_f64().unwrap();
    let motion = summary["motion_accuracy"].as_f64().unwrap();
    eprintln!("built-in model on {PROMPTS} held-out prompts: colour {colour:.3}, motion {motion:.3}");
    assert!(colour >= MIN_COLOUR, "colour accuracy {colour:.3} < {MIN_COLOUR} (summary {summary})");
    assert!(motion >= MIN_MOTION, "motion accuracy {motion:.3} < {MIN_MOTION} (summary {summary})");
}

/// Without `--model`, a video longer than 17 frames goes to the built-in causal model
/// (`builtin-long`, issue 8), streamed as fragmented MP4.
#[test]
fn long_video_without_model_uses_the_builtin_causal_model() {
    let dir = scratch("builtin-long-gen");
    let out = dir.join("long.mp4");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--seconds", "3", "--prompt", "a large red circle moves slowly to the left on a dark blue background", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "generate failed: {err}");
    assert!(err.contains("using builtin-long"), "the switch to the causal model is announced: {err}");
    let text = probe_stream(&out);
    for want in ["width=128", "height=128", "nb_read_frames=49"] {
        assert!(text.contains(want), "ffprobe: expected {want} in\n{text}");
    }
    let tags = ffprobe(&out, &["-show_entries", "format_tags", "-of", "default=nw=1"]);
    assert!(tags.contains("model: builtin-long"), "metadata names the model: {tags}");
    // An image asks for the bidirectional model (LongSANA has no image-to-video): no switch.
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--frames", "9", "--steps", "1", "--chunk-frames", "2", "--image"])
        .arg(fixtures().join("builtin/builtin_i2v.png"))
        .args(["--prompt", "a red circle", "-o"])
        .arg(dir.join("i2v.mp4"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--chunk-frames is for LongSANA"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The built-in causal model's quality regression (issue 8): the first 6 held-out prompts,
/// seed 1, 81 frames (5 s: ten chunks), each 1-second window scored. Floors just under what
/// this checkpoint measured with exactly these settings (BENCHMARKS.md, "Built-in causal model").
#[test]
fn builtin_long_quality_regression() {
    const PROMPTS: usize = 6;
    // Measured 48 / 65 = 0.74 and 33 / 48 = 0.69 (tools/train/runs/2026-11-28-causal-long; the
    // first causal model: 0.77 and 0.60).
    const MIN_COLOUR: f64 = 0.70;
    const MIN_MOTION: f64 = 0.60;
    let dir = scratch("builtin-long-quality");
    let all = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/dataset/heldout_prompts.txt")).unwrap();
    let first: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).take(PROMPTS).collect();
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, first.join("\n")).unwrap();
    let short = bin().args(["evaluate", "--backend", "cpu", "--model", "builtin-long", "--frames", "9", "--prompts"]).arg(&prompts).output().unwrap();
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("17-frame windows"), "{}", String::from_utf8_lossy(&short.stderr));
    let summary = evaluate(&prompts, &["--model", "builtin-long", "--frames", "81", "--seeds", "1"]);
    assert_eq!(summary["windows"].as_array().map(|w| w.len()), Some(5), "five 1-second windows: {summary}");
    let colour = summary["colour_accuracy"].as_f64().unwrap();
    let motion = summary["motion_accuracy"].as_f64().unwrap();
    eprintln!("built-in causal model, {PROMPTS} held-out prompts x 5 windows: colour {colour:.3}, motion {motion:.3}");
    assert!(colour >= MIN_COLOUR, "colour accuracy {colour:.3} < {MIN_COLOUR} (summary {summary})");
    assert!(motion >= MIN_MOTION, "motion accuracy {motion:.3} < {MIN_MOTION} (summary {summary})");
}

/// Issue 8's coherence over chunk boundaries, on the built-in causal model: over 81 frames
/// (ten chunks) the background keeps its colour and a circle asked to move right keeps
/// moving: it leaves at the right edge and comes back in from the left, as the long-clip
/// training data does (motion_dataset.py --long). The first causal model failed both: its
/// dark blue (15, 25, 80) fell to (9, 9, 32) by frame 40 (the VAE's decoder, never trained
/// past 17 frames) and the circle stopped at x = 0.89. Measured here: background within
/// 3/255 of frame 0's, the circle back at x = 0.05 by frame 64.
#[test]
fn builtin_long_keeps_the_background_and_the_motion_across_chunks() {
    let dir = scratch("builtin-long-coherence");
    let out = dir.join("long.safetensors");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--model", "builtin-long", "--frames", "81", "--prompt", "a large red circle moves slowly to the right on a dark blue background", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "generate failed: {}", String::from_utf8_lossy(&o.stderr));
    let frames = read(&out, "frames");
    let px = 128 * 128;
    assert_eq!(frames.len(), 81 * px * 3, "81 frames of 128x128 RGB");
    let frame = |t: usize| &frames[t * px * 3..(t + 1) * px * 3];
    let median = |t: usize, c: usize| {
        let mut v: Vec<f64> = frame(t).iter().skip(c).step_by(3).copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2] * 255.0
    };
    // The red circle's centre (x in 0..1), if at least 20 red pixels are in view.
    let red_x = |t: usize| {
        let f = frame(t);
        let xs: Vec<usize> = (0..px).filter(|&i| f[3 * i] > 150.0 / 255.0 && f[3 * i + 1] < 100.0 / 255.0 && f[3 * i + 2] < 120.0 / 255.0).map(|i| i % 128).collect();
        (xs.len() >= 20).then(|| xs.iter().sum::<usize>() as f64 / xs.len() as f64 / 128.0)
    };
    let first: Vec<f64> = (0..3).map(|c| median(0, c)).collect();
    for t in (8..81).step_by(8) {
        let now: Vec<f64> = (0..3).map(|c| median(t, c)).collect();
        let off = first.iter().zip(&now).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(off <= 8.0, "frame {t}: background {now:?} drifted {off:.1}/255 from frame 0's {first:?}");
    }
    let xs: Vec<Option<f64>> = (0..81).step_by(8).map(red_x).collect();
    eprintln!("background {first:?}; circle x every 8 frames {xs:?}");
    let start = xs[0].expect("the circle is in the first frame");
    let right = xs.iter().take(6).flatten().fold(0.0, |a: f64, &b| a.max(b));
    assert!(right >= start + 0.3, "moves right in the first 40 frames: {xs:?}");
    assert!(xs[6..].iter().flatten().any(|&x| x < 0.3), "after leaving at the right it comes back in from the left: {xs:?}");
}
