//! Times VAE decodes at given latent sizes and reports device memory: Wan2.1 streams
//! (`--chunk` latent frames per push, to show time per frame and memory flat in the number
//! of frames); LTX-2 decodes the whole sequence (its context spans a 5 s clip).
//!
//! ```text
//! cargo run --release -p sana-video-benches --bin vae-decode -- --model DIR \
//!     [--backend cpu|wgpu|vulkan|cuda] [--dtype f32|f16|bf16] [--latent BxTxHxW ...] [--chunk 1] [--iters 1]
//!     [--conv auto|tap-gemm|reference] [--profile]
//! ```
//! DIR is a diffusers `vae/` folder (e.g. tools/fullsize_wan_vae.py's random official
//! config). Latents are random; each decode pushes `--chunk` latent frames at a time and
//! reads every returned chunk back to the host (as a video writer would). Memory: the
//! allocator's reserved bytes after the decode (pools only grow, so this is the peak
//! reservation), reset by a cleanup between sizes.

use std::time::Instant;

use burn::tensor::{DType, Distribution, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::FsSource;
use sana_video_core::models::vae::Vae;

fn parse(s: &str) -> Result<[usize; 4], String> {
    let v: Vec<usize> = s.split('x').map(|p| p.parse::<usize>()).collect::<Result<_, _>>().map_err(|_| format!("--latent {s}: expected BxTxHxW"))?;
    v.try_into().map_err(|_| format!("--latent {s}: expected BxTxHxW"))
}

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut model, mut backend, mut dtype) = (None, None, DType::F32);
    let (mut latents, mut chunk, mut iters) = (Vec::new(), 1usize, 1usize);
    let (mut profile, mut profile_table) = (false, None);
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--profile" {
            // GPU time per stage of the last size (SANA_PROFILE_MODE=timeline: without syncs).
            profile = true;
            i += 1;
            continue;
        }
        let val = argv.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--model" => model = Some(val),
            "--backend" => backend = Some(BackendKind::parse(&val).map_err(|e| e.to_string())?),
            "--dtype" => dtype = device::parse_dtype(&val).map_err(|e| e.to_string())?,
            "--latent" => latents.push(parse(&val)?),
            "--chunk" => chunk = val.parse().map_err(|_| "--chunk: integer")?,
            "--iters" => iters = val.parse().map_err(|_| "--iters: integer")?,
            "--conv" => sana_video_core::models::vae::conv::set_default_impl(match val.as_str() {
                "auto" => sana_video_core::models::vae::conv::ConvImpl::Auto,
                "tap-gemm" => sana_video_core::models::vae::conv::ConvImpl::TapGemm,
                "reference" => sana_video_core::models::vae::conv::ConvImpl::Reference,
                other => return Err(format!("--conv {other}: auto, tap-gemm or reference")),
            }),
            other => return Err(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let dir = model.ok_or("--model DIR is required")?;
    if latents.is_empty() {
        latents = vec![[1, 2, 8, 8], [1, 6, 8, 8]];
    }
    let (kind, device) = match backend {
        Some(k) => (k, device::create(k).map_err(|e| e.to_string())?),
        None => device::best_available().map_err(|e| e.to_string())?,
    };
    let t0 = Instant::now();
    let (vae, _) = Vae::load(&FsSource, &dir, &device, dtype).map_err(|e| e.to_string())?;
    let (class, params, z_dim, tf) = match &vae {
        Vae::Wan(v) => ("AutoencoderKLWan", v.config.parameter_count(), v.config.z_dim, v.config.temporal_factor()),
        Vae::Ltx2(v) => ("AutoencoderKLLTX2Video", v.config.parameter_count(), v.config.latent_channels, v.config.temporal_factor()),
    };
    println!(
        "# vae-decode: backend {} dtype {:?} model {dir} ({class}, {:.1} M params) loaded in {:.1} s, {}, conv {:?}{}",
        device::name(kind),
        dtype,
        params as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        if matches!(vae, Vae::Wan(_)) { format!("{chunk} latent frame(s) per push") } else { "whole sequence".into() },
        sana_video_core::models::vae::conv::default_impl(),
        if kind == BackendKind::Cuda && sana_video_core::models::vae::conv::vae_tf32(dtype) { " (TF32 products; SANA_VAE_TF32=0: exact)" } else { "" }
    );
    println!("| latent [B,T,h,w] | video frames | pixels | total s | s per video frame | reserved after |");
    println!("|---|---|---|---|---|---|");
    let s = vae.spatial_factor();
    let last = latents.len();
    for (li, [b, t, h, w]) in latents.into_iter().enumerate() {
        let mut best = f64::MAX;
        for _ in 0..iters.max(1) {
            device.memory_cleanup();
            let z = Tensor::<5>::random([b, z_dim, t, h, w], Distribution::Normal(0.0, 1.0), &device);
            device.sync().map_err(|e| format!("{e:?}"))?;
            let start = Instant::now();
            let profiled = profile && li + 1 == last;
            if profiled {
                sana_video_core::profile::enable(true);
                sana_video_core::profile::mark(&device, "start");
            }
            match &vae {
                Vae::Wan(v) => {
                    let mut stream = v.decode_stream();
                    let mut i = 0;
                    while i < t {
                        let n = if i == 0 { 1 } else { chunk.min(t - i) };
                        let frames = stream.push(z.clone().narrow(2, i, n)).map_err(|e| e.to_string())?;
                        let _ = frames.into_data();
                        i += n;
                    }
                }
                Vae::Ltx2(_) => {
                    let _ = vae.decode(z.clone()).map_err(|e| e.to_string())?.into_data();
                }
            }
            let took = start.elapsed().as_secs_f64();
            if profiled {
                sana_video_core::profile::mark(&device, "vae: other ops");
                let rec = sana_video_core::profile::take();
                sana_video_core::profile::enable(false);
                profile_table = Some(sana_video_core::profile::table(&format!("decode {b}x{t}x{h}x{w}"), took, rec));
            }
            best = best.min(took);
        }
        let frames = 1 + tf * (t - 1);
        let reserved = device.memory_pool_usage().map(|u| format!("{:.2} GB", u.bytes_reserved as f64 / 1e9)).unwrap_or("n/a".into());
        println!("| {b}x{t}x{h}x{w} | {frames} | {}x{} | {best:.3} | {:.4} | {reserved} |", h * s, w * s, best / frames as f64);
    }
    if let Some(t) = profile_table {
        print!("{t}");
    }
    // The pool's pages (how the reservation above is carved).
    for line in sana_video_core::device::pool_pages(&device) {
        println!("{line}");
    }
    Ok(())
}
