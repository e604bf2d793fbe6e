//! `sana-video debug vae-decode` / `vae-encode` against the diffusers fixtures, and their
//! refusals of bad input (clear message, non-zero exit, no output file).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn fixture(case: &str) -> PathBuf {
    fixtures().join("vae").join(case)
}

fn run(runner: &str, model: &Path, inputs: &Path, out: &Path, backend: &str) -> Output {
    bin()
        .args(["debug", runner, "--model"])
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
fn vae_runners_match_diffusers() {
    let dir = scratch("parity");
    for (backend, case) in [("cpu", "unseen_wan_t5"), ("wgpu", "unseen_wan_t5"), ("cpu", "unseen_ltx_t3_causal")] {
        let c = fixture(case);
        let out = dir.join(format!("dec-{backend}.safetensors"));
        let o = run("vae-decode", &c.join("vae"), &c.join("decode_inputs.safetensors"), &out, backend);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rel = rel_l2(&read(&out, "sample"), &read(&c.join("decode_outputs.safetensors"), "sample"));
        assert!(rel <= 1e-5, "decode {backend}: {rel:e}");
        let out = dir.join(format!("enc-{backend}.safetensors"));
        let o = run("vae-encode", &c.join("vae"), &c.join("encode_inputs.safetensors"), &out, backend);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rel = rel_l2(&read(&out, "latent_mean"), &read(&c.join("encode_outputs.safetensors"), "latent_mean"));
        assert!(rel <= 1e-5, "encode {backend}: {rel:e}");
    }
}

#[test]
fn bad_vae_inputs_are_refused_without_output() {
    let dir = scratch("bad");
    let out = dir.join("out.safetensors");
    let vae = fixture("wan_t3_3x5").join("vae");
    // Wrong latent channel count (the VAE has z_dim 4).
    let p = dir.join("z5.safetensors");
    write_f32(&p, "latents", &vec![0.0; 5 * 2 * 3 * 5], &[1, 5, 2, 3, 5]);
    expect_failure(&run("vae-decode", &vae, &p, &out, "cpu"), &out, &["[1, 5, 2, 3, 5]", "[batch, 4, frames, height, width]"]);
    // Wrong rank; missing tensor name.
    write_f32(&p, "latents", &vec![0.0; 4 * 3 * 5], &[4, 3, 5]);
    expect_failure(&run("vae-decode", &vae, &p, &out, "cpu"), &out, &["latents", "rank"]);
    write_f32(&p, "z", &vec![0.0; 4], &[1, 4, 1, 1, 1]);
    expect_failure(&run("vae-decode", &vae, &p, &out, "cpu"), &out, &["missing tensor `latents`"]);
    // A video whose frame count is not 1 + 4k, or whose size is not a multiple of 8.
    write_f32(&p, "sample", &vec![0.0; 3 * 3 * 8 * 8], &[1, 3, 3, 8, 8]);
    expect_failure(&run("vae-encode", &vae, &p, &out, "cpu"), &out, &["[1, 3, 3, 8, 8]", "1 + 4k frames"]);
    write_f32(&p, "sample", &vec![0.0; 3 * 12 * 8], &[1, 3, 1, 12, 8]);
    expect_failure(&run("vae-encode", &vae, &p, &out, "cpu"), &out, &["multiples of 8"]);
    // Unsupported configs and classes.
    let cfg = std::fs::read_to_string(vae.join("config.json")).unwrap();
    for (name, from, to, msg) in [
        ("residual", "\"is_residual\": false", "\"is_residual\": true", "is_residual"),
        ("dcae", "\"AutoencoderKLWan\"", "\"AutoencoderDC\"", "VAE class `AutoencoderDC` is not supported"),
        ("scales", "\"attn_scales\": []", "\"attn_scales\": [1.0]", "attn_scales"),
    ] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), cfg.replace(from, to)).unwrap();
        std::fs::copy(vae.join("diffusion_pytorch_model.safetensors"), d.join("diffusion_pytorch_model.safetensors")).unwrap();
        let inputs = fixture("wan_t3_3x5").join("decode_inputs.safetensors");
        expect_failure(&run("vae-decode", &d, &inputs, &out, "cpu"), &out, &[msg]);
    }
    // LTX-2 variants we do not implement, and latents it cannot take.
    let ltx = fixture("ltx_t2_2x3").join("vae");
    let cfg = std::fs::read_to_string(ltx.join("config.json")).unwrap();
    for (name, from, to, msg) in [
        ("tc", "\"timestep_conditioning\": false", "\"timestep_conditioning\": true", "timestep_conditioning"),
        ("noise", "\"decoder_inject_noise\": [\n    false", "\"decoder_inject_noise\": [\n    true", "decoder_inject_noise"),
    ] {
        assert!(cfg.contains(from), "fixture config should contain {from}");
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), cfg.replace(from, to)).unwrap();
        std::fs::copy(ltx.join("diffusion_pytorch_model.safetensors"), d.join("diffusion_pytorch_model.safetensors")).unwrap();
        let inputs = fixture("ltx_t2_2x3").join("decode_inputs.safetensors");
        expect_failure(&run("vae-decode", &d, &inputs, &out, "cpu"), &out, &[msg]);
    }
    write_f32(&p, "latents", &vec![0.0; 8 * 2 * 3], &[1, 8, 2, 1, 3]);
    expect_failure(&run("vae-decode", &ltx, &p, &out, "cpu"), &out, &["[1, 8, 2, 1, 3]", "at least 2"]);
    write_f32(&p, "sample", &vec![0.0; 3 * 5 * 16 * 16], &[1, 3, 5, 16, 16]);
    expect_failure(&run("vae-encode", &ltx, &p, &out, "cpu"), &out, &["1 + 8k frames", "multiples of 16"]);
}
