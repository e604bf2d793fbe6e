//! LongSANA through the CLI (issue 8): a block-causal checkpoint generates chunk by chunk;
//! `--save-state` then `--resume` continues the video exactly as an uninterrupted run
//! would (parity test (c)); state files from another size, window or a corrupt file are
//! refused by name. The checkpoint is the built-in model's folder with its transformer
//! declared block-causal (the weights layout is the same), so every component is real.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const PROMPT: &str = "a small red circle moves slowly to the left on a black background";

fn causal_model(name: &str) -> PathBuf {
    let dir = scratch(name).join("model");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../builtin-model");
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    for f in ["transformer/config.json", "model_index.json"] {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p).unwrap().replace("\"SanaVideoTransformer3DModel\"", "\"SanaVideoCausalTransformer3DModel\"");
        std::fs::write(&p, text).unwrap();
    }
    dir
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn generate(model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    generate_with(model, out, "64", "2", extra)
}

/// `generate` at WIDTH x 64 in chunks of CHUNK latent frames.
fn generate_with(model: &Path, out: &Path, width: &str, chunk: &str, extra: &[&str]) -> std::process::Output {
    // A resumed run takes its seed from the state file.
    let seed: &[&str] = if extra.contains(&"--resume") { &[] } else { &["--seed", "5"] };
    bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--height", "64", "--width", width, "--chunk-frames", chunk])
        .args(seed)
        .args(["--prompt", PROMPT, "--model"])
        .arg(model)
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn save_state_then_resume_equals_an_uninterrupted_run() {
    let model = causal_model("long-resume");
    let dir = model.parent().unwrap().to_path_buf();
    let (full, first, rest, state) =
        (dir.join("full.safetensors"), dir.join("a.safetensors"), dir.join("b.safetensors"), dir.join("s.state"));
    // 41 frames = 11 latent frames = chunks [3, 2, 2, 2, 2]; 25 + 16 frames = [3, 2, 2] + [2, 2].
    ok(&generate(&model, &full, &["--frames", "41"]), "uninterrupted run");
    ok(&generate(&model, &first, &["--frames", "25", "--save-state", state.to_str().unwrap()]), "first part");
    assert!(state.exists(), "no state file");
    ok(&generate(&model, &rest, &["--frames", "16", "--resume", state.to_str().unwrap()]), "resumed part");
    let (f, a, b) = (read(&full, "frames"), read(&first, "frames"), read(&rest, "frames"));
    let px = 64 * 64 * 3;
    assert_eq!(f.len(), 41 * px);
    assert_eq!(a.len(), 25 * px);
    assert_eq!(b.len(), 16 * px);
    let err_a = rel_l2(&a, &f[..25 * px]);
    let err_b = rel_l2(&b, &f[25 * px..]);
    eprintln!("first part vs uninterrupted: rel {err_a:.2e}; resumed part: rel {err_b:.2e}");
    assert!(err_a <= 1e-6 && err_b <= 1e-6, "resume differs: {err_a:.2e}, {err_b:.2e}");
    let (lf, la, lb) = (read(&full, "latents"), read(&first, "latents"), read(&rest, "latents"));
    let lat = 16 * 8 * 8;
    assert_eq!(lf.len(), 11 * lat);
    assert!(rel_l2(&la, &lf[..7 * lat]) <= 1e-6 && rel_l2(&lb, &lf[7 * lat..]) <= 1e-6, "latents differ after resume");
}

#[test]
fn resume_refuses_other_sizes_windows_and_corrupt_files() {
    let model = causal_model("long-refuse");
    let dir = model.parent().unwrap().to_path_buf();
    let state = dir.join("s.state");
    ok(&generate(&model, &dir.join("a.safetensors"), &["--frames", "9", "--save-state", state.to_str().unwrap()]), "first part");
    let s = state.to_str().unwrap();

    let out = dir.join("wider.mp4");
    let o = generate_with(&model, &out, "128", "2", &["--frames", "8", "--resume", s]);
    expect_failure(&o, &out, &["--resume", "another size"]);

    let out = dir.join("window.mp4");
    let o = generate(&model, &out, &["--frames", "8", "--resume", s, "--cached-blocks", "1"]);
    expect_failure(&o, &out, &["--resume", "--cached-blocks"]);

    let out = dir.join("odd.mp4");
    let o = generate(&model, &out, &["--frames", "9", "--resume", s]);
    expect_failure(&o, &out, &["--frames 9", "steps of 4"]);

    let bad = dir.join("corrupt.state");
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.join("corrupt.mp4");
    let o = generate(&model, &out, &["--frames", "8", "--resume", bad.to_str().unwrap()]);
    expect_failure(&o, &out, &["--resume", "corrupt.state"]);

    let out = dir.join("seed.mp4");
    let o = generate(&model, &out, &["--frames", "8", "--resume", s, "--seed", "3"]);
    expect_failure(&o, &out, &["--seed", "--resume"]);

    let out = dir.join("chunking.mp4");
    let o = generate_with(&model, &out, "64", "3", &["--frames", "12", "--resume", s]);
    expect_failure(&o, &out, &["--resume", "--chunk-frames"]);

    // One changed value in the tensor data (the file still parses): the checksum refuses it.
    let flipped = dir.join("flipped.state");
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let out = dir.join("flipped.mp4");
    let o = generate(&model, &out, &["--frames", "8", "--resume", flipped.to_str().unwrap()]);
    expect_failure(&o, &out, &["--resume", "flipped.state", "damaged"]);

    // A bidirectional checkpoint has no state to resume.
    let out = dir.join("bidir.mp4");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--quiet", "--model", "builtin", "--prompt", PROMPT, "--resume", s, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    expect_failure(&o, &out, &["--resume", "bidirectional"]);
    // Without --model, --resume means the built-in causal model: another model for this state
    // (its VAE has the long-clip decoder, so its config differs from builtin-model's).
    let o = bin().args(["generate", "--backend", "cpu", "--quiet", "--prompt", PROMPT, "--resume", s, "-o"]).arg(&out).output().unwrap();
    expect_failure(&o, &out, &["--resume", "another model"]);
}

#[test]
fn flags_that_do_not_apply_are_refused_before_work() {
    let model = causal_model("long-flags");
    let dir = model.parent().unwrap().to_path_buf();
    for (flag, value) in [("--steps", "20"), ("--cfg-scale", "4"), ("--sampler", "euler"), ("--negative-prompt", "blurry")] {
        let out = dir.join("x.mp4");
        let o = generate(&model, &out, &["--frames", "9", flag, value]);
        expect_failure(&o, &out, &[flag, "LongSANA"]);
    }
    let out = dir.join("y.mp4");
    let o = generate(&model, &out, &["--frames", "9", "--save-state", "/nonexistent/dir/s.state"]);
    expect_failure(&o, &out, &["--save-state", "/nonexistent/dir/s.state"]);
    let sched = dir.join("s.txt");
    std::fs::write(&sched, format!("0 {PROMPT}\n")).unwrap();
    let o = generate(&model, &out, &["--frames", "9", "--prompt-schedule", sched.to_str().unwrap()]);
    expect_failure(&o, &out, &["--prompt", "--prompt-schedule"]);
}

#[test]
fn prompt_schedule_switches_prompts_and_rejects_bad_files() {
    let model = causal_model("long-schedule");
    let dir = model.parent().unwrap().to_path_buf();
    let sched = dir.join("story.txt");
    std::fs::write(&sched, "# story\n0 a small red circle moves slowly to the left on a black background\n1.0 a large blue square moves quickly upward on a black background\n").unwrap();
    let out = dir.join("story.safetensors");
    let o = bin()
        .args(["generate", "--backend", "cpu", "--height", "64", "--width", "64", "--chunk-frames", "2", "--frames", "25"])
        .arg("--model")
        .arg(&model)
        .arg("--prompt-schedule")
        .arg(&sched)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    ok(&o, "prompt schedule");
    let log = String::from_utf8_lossy(&o.stderr);
    // Chunks start at frames 0, 9 (0.56 s), 17 (1.06 s): the third uses the second prompt.
    assert!(log.contains("chunk 2/3") && log.contains("prompt 1") && log.contains("prompt 2"), "{log}");
    assert_eq!(read(&out, "frames").len(), 25 * 64 * 64 * 3);

    std::fs::write(&sched, "2 starts late\n").unwrap();
    let out = dir.join("late.mp4");
    let o = bin().arg("generate").arg("--model").arg(&model).arg("--prompt-schedule").arg(&sched).arg("-o").arg(&out).output().unwrap();
    expect_failure(&o, &out, &["--prompt-schedule", "must start at 0"]);
}

/// Top-level boxes of an MP4 file: (type, offset, size).
fn top_boxes(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8, "box size {size} at {at}");
        out.push((String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string(), at, size));
        at += size;
    }
    assert_eq!(at, bytes.len(), "boxes do not tile the file");
    out
}

#[test]
fn mp4_is_streamed_in_fragments_as_frames_are_decoded() {
    let model = causal_model("long-stream");
    let dir = model.parent().unwrap().to_path_buf();
    let (mp4, exact) = (dir.join("long.mp4"), dir.join("long.safetensors"));
    // 41 frames = 11 latent frames; the streaming decoder hands over 1, then 4 frames per
    // latent frame, and each hand-over becomes one fragment.
    ok(&generate(&model, &mp4, &["--frames", "41"]), "mp4 run");
    let bytes = std::fs::read(&mp4).unwrap();
    let boxes = top_boxes(&bytes);
    let kinds: Vec<&str> = boxes.iter().map(|b| b.0.as_str()).collect();
    let mut want = vec!["ftyp", "moov"];
    for _ in 0..11 {
        want.extend(["moof", "mdat"]);
    }
    assert_eq!(kinds, want, "expected the header, then one fragment per decoded latent frame");
    let text = probe_stream(&mp4);
    for want in ["codec_name=h264", "width=64", "height=64", "r_frame_rate=16/1", "nb_read_frames=41"] {
        assert!(text.contains(want), "ffprobe: expected {want} in\n{text}");
    }
    let tags = ffprobe(&mp4, &["-show_entries", "format_tags", "-of", "default=nw=1"]);
    assert!(tags.contains(PROMPT) && tags.contains("longlive"), "MP4 tags: {tags}");

    // A file cut after any fragment plays: what a viewer of the growing file sees.
    for (fragments, frames) in [(1, 1), (3, 9), (7, 25)] {
        let end = boxes[2 + 2 * fragments - 1].1 + boxes[2 + 2 * fragments - 1].2;
        let cut = dir.join(format!("cut{fragments}.mp4"));
        std::fs::write(&cut, &bytes[..end]).unwrap();
        let text = probe_stream(&cut);
        assert!(text.contains(&format!("nb_read_frames={frames}")), "{fragments} fragment(s): expected {frames} frames in\n{text}");
    }

    // The decoded frames are the run's frames (H.264 at QP <= 22).
    ok(&generate(&model, &exact, &["--frames", "41"]), "safetensors run");
    let psnr = mp4_luma_psnr(&mp4, &read(&exact, "frames"));
    println!("fragmented MP4 luma PSNR {psnr:.1} dB");
    assert!(psnr >= 32.0, "fragmented MP4 luma PSNR {psnr:.1} dB");
}
