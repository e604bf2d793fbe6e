//! Times one DiT forward (SanaVideoTransformer3DModel) at given latent sizes.
//!
//! ```text
//! cargo run --release -p sana-video-benches --bin dit-forward -- \
//!     --model DIR [--backend cpu|wgpu|vulkan|cuda] [--dtype f32|f16|bf16] \
//!     [--latent BxFxHxW ...] [--text-len 300] [--warmup 1] [--iters 3] [--chain N] [--mask-pad P] \
//!     [--kernels auto|reference] [--quantize fp8|nvfp4] [--profile]
//! ```
//! `--quantize` first writes the model's weights quantised as `sana-video quantize` would
//! (to a folder under the temp dir, removed at the end, or to `--quantized-dir DIR`, kept
//! for later runs' `--model`; it must not exist yet): one bf16 checkpoint serves every
//! format, without the CLI.
//! `--kernels reference` runs the plain tensor-op versions of our fused ops instead of the
//! CubeCL kernels (same numerics, for comparison). `--profile` adds one more forward per
//! size (and profiles the `--chain`) with per-stage figures: a device sync after every stage,
//! or with `SANA_PROFILE_MODE=timeline` on CUDA, GPU time between events and no syncs.
//! DIR is a diffusers `transformer/` folder, e.g. a random full-size checkpoint from
//! `tools/make_fullsize_checkpoint.py`. Inputs are random; the figure reported is the
//! median wall time of `--iters` forwards after `--warmup`, each ending in a one-value read
//! and a device sync, plus tokens, achieved TFLOP/s (2·params_per_token FLOPs) and the time
//! the host took to issue the forward. The sync matters: on CUDA the one-value read returned
//! before the GPU had finished (BENCHMARKS.md); a note is printed whenever it does.
//! `SANA_BENCH_CHECK_READ=1` also reads the whole output before and after a sync and
//! compares the two.

use std::time::Instant;

use burn::tensor::{DType, Distribution, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::FsSource;
use sana_video_core::kernels::Impl;
use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};
use sana_video_core::io::safetensors::Weights;
use sana_video_core::profile;
use sana_video_core::quant::{quantize_weights, Format};

/// A folder removed when dropped, unless `keep`.
struct TempDir {
    path: std::path::PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `dir` (a diffusers `transformer/` folder) with its weights quantised to `format`, in
/// `keep_in` (kept) or a temporary folder.
fn quantised_copy(dir: &str, format: Format, keep_in: Option<&str>) -> Result<TempDir, String> {
    let t0 = Instant::now();
    // Kept only once complete: a failure below removes the partial folder.
    let mut out = match keep_in {
        Some(d) if std::path::Path::new(d).exists() => return Err(format!("--quantized-dir {d}: already exists")),
        Some(d) => TempDir { path: d.into(), keep: false },
        None => TempDir { path: std::env::temp_dir().join(format!("dit-forward-{format:?}-{}", std::process::id())), keep: false },
    };
    std::fs::create_dir_all(&out.path).map_err(|e| format!("{}: {e}", out.path.display()))?;
    let config = std::path::Path::new(dir).join("config.json");
    std::fs::copy(&config, out.path.join("config.json")).map_err(|e| format!("{}: {e}", config.display()))?;
    let w = Weights::open_dir(&FsSource, dir, "diffusion_pytorch_model").map_err(|e| e.to_string())?;
    let (bytes, sum) = quantize_weights(&w, format).map_err(|e| e.to_string())?;
    let file = out.path.join("diffusion_pytorch_model.safetensors");
    std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "# quantised to {format:?} in {:.1} s: {} tensors, weights {:.1} MB -> {:.1} MB",
        t0.elapsed().as_secs_f64(),
        sum.quantised,
        sum.bytes_in as f64 / 1e6,
        sum.bytes_out as f64 / 1e6
    );
    out.keep = keep_in.is_some();
    Ok(out)
}

fn parse_latent(s: &str) -> Result<[usize; 4], String> {
    let v: Vec<usize> = s.split('x').map(|p| p.parse::<usize>()).collect::<Result<_, _>>().map_err(|_| format!("--latent {s}: expected BxFxHxW"))?;
    v.try_into().map_err(|_| format!("--latent {s}: expected BxFxHxW"))
}

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut model = None;
    let mut backend = None;
    let mut dtype = DType::F32;
    let mut latents = Vec::new();
    let (mut text_len, mut warmup, mut iters) = (300usize, 1usize, 3usize);
    let mut kernels = Impl::Auto;
    let mut profile = false;
    let (mut chain, mut mask_pad) = (0usize, None::<usize>);
    let (mut quantize, mut quantized_dir) = (None, None::<String>);
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--profile" {
            profile = true;
            i += 1;
            continue;
        }
        let val = argv.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--model" => model = Some(val),
            "--backend" => backend = Some(BackendKind::parse(&val).map_err(|e| e.to_string())?),
            "--dtype" => dtype = device::parse_dtype(&val).map_err(|e| e.to_string())?,
            "--latent" => latents.push(parse_latent(&val)?),
            "--text-len" => text_len = val.parse().map_err(|_| "--text-len: integer")?,
            "--warmup" => warmup = val.parse().map_err(|_| "--warmup: integer")?,
            "--iters" => iters = val.parse().map_err(|_| "--iters: integer")?,
            "--chain" => chain = val.parse().map_err(|_| "--chain: integer")?,
            "--mask-pad" => mask_pad = Some(val.parse().map_err(|_| "--mask-pad: integer")?),
            "--quantized-dir" => quantized_dir = Some(val),
            "--quantize" => quantize = Some(Format::parse(&val).ok_or_else(|| format!("--quantize {val}: expected fp8 or nvfp4"))?),
            "--kernels" => {
                kernels = match val.as_str() {
                    "auto" => Impl::Auto,
                    "reference" => Impl::Reference,
                    other => return Err(format!("--kernels {other}: expected auto or reference")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let mut model_dir = model.ok_or("--model DIR is required")?;
    let _quantised = match quantize {
        Some(format) => {
            let dir = quantised_copy(&model_dir, format, quantized_dir.as_deref())?;
            model_dir = dir.path.to_string_lossy().to_string();
            Some(dir)
        }
        None => None,
    };
    if latents.is_empty() {
        latents = vec![[1, 2, 8, 8], [1, 5, 30, 52]];
    }
    let (kind, device) = match backend {
        Some(k) => (k, device::create(k).map_err(|e| e.to_string())?),
        None => device::best_available().map_err(|e| e.to_string())?,
    };
    sana_video_core::nn::configure_fp8_activations().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (mut model, _) = SanaVideoTransformer3DModel::load(&FsSource, &model_dir, &device, dtype).map_err(|e| e.to_string())?;
    model.kernels = kernels;
    let load_s = t0.elapsed().as_secs_f64();
    let cfg = model.config.clone();
    let params = cfg.parameter_count() as f64;
    println!(
        "# dit-forward: backend {} dtype {:?} kernels {:?} quantised layers: {} model {} ({:.3} B params, {} layers) loaded in {:.1} s",
        device::name(kind),
        dtype,
        kernels,
        sana_video_core::nn::quantised_layers_summary().unwrap_or_else(|| "none".into()),
        model_dir,
        params / 1e9,
        cfg.layers,
        load_s
    );
    let mut profiles = Vec::new();
    // "host issue s": how long `forward` took to return, before the read waits for the GPU.
    println!("| latent [B,C,F,H,W] | tokens | median s | min s | max s | TFLOP/s | host issue s |");
    println!("|---|---|---|---|---|---|---|");
    for [b, f, h, w] in latents {
        let grid = model.token_grid(f, h, w).map_err(|e| e.to_string())?;
        let tokens = b * grid.iter().product::<usize>();
        // A caption mask as the pipeline passes one: the last `--mask-pad` tokens padded.
        let mask: Option<Vec<f32>> = mask_pad.map(|p| (0..b * text_len).map(|i| if i % text_len + p >= text_len { 0.0 } else { 1.0 }).collect());
        // Random latents and caption, synced, so the clock starts on an idle device.
        let inputs = || -> Result<(Tensor<5>, Tensor<3>), String> {
            let x = Tensor::<5>::random([b, cfg.in_channels, f, h, w], Distribution::Normal(0.0, 1.0), &device);
            let y = Tensor::<3>::random([b, text_len, cfg.caption_channels], Distribution::Normal(0.0, 1.0), &device);
            device.sync().map_err(|e| format!("{e:?}"))?;
            Ok((x, y))
        };
        // A one-value read; the caller then syncs (the read alone did not wait on CUDA).
        let finish = |out: Tensor<5>| {
            let _ = out.slice([0..1, 0..1, 0..1, 0..1, 0..1]).into_data();
        };
        let t = Timesteps::PerSample(vec![500.0; b]);
        let check_read = std::env::var("SANA_BENCH_CHECK_READ").is_ok_and(|v| v == "1");
        // (seconds to the result, seconds the host took to issue the forward)
        let run = || -> Result<(f64, f64), String> {
            let (x, y) = inputs()?;
            profile::mark(&device, "start"); // starts the stage clock when profiling
            let start = Instant::now();
            let out = model.forward(x, y, &t, mask.as_deref()).map_err(|e| e.to_string())?;
            let issued = start.elapsed().as_secs_f64();
            if check_read {
                // Does a read wait for the work that wrote it? Read the whole output at once,
                // then again after a sync: the two must agree.
                let host = |t: Tensor<5>| t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
                let early = host(out.clone())?;
                let at = start.elapsed().as_secs_f64();
                device.sync().map_err(|e| format!("{e:?}"))?;
                let late = host(out.clone())?;
                let diff = early.iter().zip(&late).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                let nan = early.iter().filter(|v| !v.is_finite()).count();
                eprintln!(
                    "check-read: whole output read after {at:.4} s, idle after {:.4} s; max |early - late| = {diff:e}, {nan} non-finite",
                    start.elapsed().as_secs_f64()
                );
            }
            finish(out);
            let read = start.elapsed().as_secs_f64();
            device.sync().map_err(|e| format!("{e:?}"))?;
            let done = start.elapsed().as_secs_f64();
            if done > read + 1e-3 {
                eprintln!("note: the read returned after {read:.4} s but the device was busy until {done:.4} s");
            }
            Ok((done, issued))
        };
        for _ in 0..warmup {
            run()?;
        }
        let runs: Vec<(f64, f64)> = (0..iters.max(1)).map(|_| run()).collect::<Result<_, _>>()?;
        let mut times: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let mut issue: Vec<f64> = runs.iter().map(|r| r.1).collect();
        issue.sort_by(|a, b| a.total_cmp(b));
        if chain > 0 {
            // Forwards back to back, as the sampler issues them: no sync between them, one
            // read at the end; the throughput a denoising loop can reach.
            // With `--profile`, the chain is profiled too (best in timeline mode: no syncs).
            let (x, y) = inputs()?;
            profile::enable(profile);
            profile::mark(&device, "start");
            let start = Instant::now();
            let mut last = None;
            for _ in 0..chain {
                last = Some(model.forward(x.clone(), y.clone(), &t, mask.as_deref()).map_err(|e| e.to_string())?);
            }
            let issued = start.elapsed().as_secs_f64();
            last.map(finish);
            let read = start.elapsed().as_secs_f64();
            device.sync().map_err(|e| format!("{e:?}"))?;
            let secs = start.elapsed().as_secs_f64();
            if secs > read + 1e-3 {
                eprintln!("note: the chain's read returned after {read:.4} s but the device was busy until {secs:.4} s");
            }
            eprintln!(
                "chain of {chain} forwards, latent {b}x{f}x{h}x{w}: {:.4} s each ({secs:.3} s; the host issued them in {issued:.3} s)",
                secs / chain as f64
            );
            if profile {
                let rec = profile::take();
                profile::enable(false);
                profiles.push((format!("{b}x{}x{f}x{h}x{w}, chain of {chain}", cfg.in_channels), secs, rec));
            }
        }
        if profile {
            profile::enable(true);
            let (total, _) = run()?;
            let rec = profile::take();
            profile::enable(false);
            profiles.push((format!("{b}x{}x{f}x{h}x{w}", cfg.in_channels), total, rec));
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let median = times[times.len() / 2];
        // 2 FLOPs per weight per token for the GEMMs (attention sums and cross-attention excluded).
        let tflops = 2.0 * params * tokens as f64 / median / 1e12;
        println!(
            "| {b}x{}x{f}x{h}x{w} | {tokens} | {median:.4} | {:.4} | {:.4} | {tflops:.3} | {:.4} |",
            cfg.in_channels,
            times[0],
            times[times.len() - 1],
            issue[issue.len() / 2]
        );
        // The pool's view of device memory against the driver's (which also counts what the
        // pool does not hold: the context, library kernels and workspaces).
        if let Some(u) = device.memory_pool_usage() {
            let driver = sana_video_core::kernels::driver_memory_used(&device).map_or("n/a".into(), |d| format!("{:.2} GB", d as f64 / 1e9));
            println!(
                "memory after these forwards: pool in use {:.2} GB, reserved {:.2} GB; device used (driver) {driver}",
                u.bytes_in_use as f64 / 1e9,
                u.bytes_reserved as f64 / 1e9,
            );
        }
        // The pool's pages by size: pools of smaller pages left behind as the page size grew
        // with the largest allocation.
        if std::env::var("SANA_MEMORY_TRACE").as_deref() == Ok("1") {
            for line in sana_video_core::device::pool_pages(&device) {
                println!("{line}");
            }
        }
    }
    // How many GEMMs went to cuBLASLt (all forwards, warm-up included).
    #[cfg(feature = "cuda")]
    {
        let st = sana_video_core::kernels::matmul::cublas::stats();
        println!("\ncuBLASLt GEMMs: {}", st.calls);
    }
    for (latent, total, rec) in profiles {
        print!("{}", profile::table(&format!("latent {latent}"), total, rec));
    }
    Ok(())
}
