//! Quantisation error of a model folder's linear layers and of the whole DiT.
//!
//! ```text
//! quant-error --model DIR [--tokens 64] [--latent BxFxHxW]
//! ```
//! For every weight `sana-video quantize` would quantise (a pipeline DIR's `transformer/`
//! and `text_encoder/`, or a component DIR's DiT): the relative L2 error of `W·x` for random activations
//! (`--tokens` Gaussian rows) with FP8 and with NVFP4 weights against the stored weights.
//! Then, for the DiT, one forward (f32 compute, CPU) at `--latent` with the stored, FP8 and
//! NVFP4 weights, and the output's relative error against the stored weights'.

use burn::tensor::{DType, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
use sana_video_core::io::{diffusers, FileSource, FsSource};
use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};
use sana_video_core::quant::{self, convert::matrix_of, Format};

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn matvec(w: &[f32], rows: usize, cols: usize, x: &[f32], tokens: usize) -> Vec<f32> {
    let mut y = vec![0f32; tokens * rows];
    for t in 0..tokens {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            y[t * rows + r] = wr.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
    y
}

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut model, mut tokens, mut latent) = (None, 64usize, [1usize, 1, 8, 8]);
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--model" => model = Some(val),
            "--tokens" => tokens = val.parse().map_err(|_| "--tokens: integer")?,
            "--latent" => {
                let v: Vec<usize> = val.split('x').map(|p| p.parse().map_err(|_| format!("--latent {val}: BxFxHxW"))).collect::<Result<_, _>>()?;
                latent = v.try_into().map_err(|_| format!("--latent {val}: BxFxHxW"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let model = model.ok_or("--model DIR is required")?;
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut gauss = move || {
        // xorshift + Box-Muller: reproducible activations without a dependency.
        let mut u = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()) as f32
    };
    println!("# quant-error: {model}, {tokens} random activation rows per layer");
    // A pipeline folder: both components; a component folder: the DiT alone.
    let pipeline = FsSource.exists(&sana_video_core::io::join(&model, "model_index.json"));
    for (comp, stem) in [("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")] {
        if !pipeline && comp != "transformer" {
            continue;
        }
        let Ok(dir) = diffusers::component_dir(&FsSource, &model, comp) else { continue };
        let w = Weights::open_dir(&FsSource, &dir, stem).map_err(|e| e.to_string())?;
        let mut errs: Vec<(String, f64, f64)> = Vec::new();
        for name in w.names() {
            let Some(meta) = w.meta(&name) else { continue };
            let Some((rows, cols)) = matrix_of(&name, &meta.shape) else { continue };
            let (v, _) = w.read_f32(&name).map_err(|e| e.to_string())?;
            let x: Vec<f32> = (0..tokens * cols).map(|_| gauss()).collect();
            let y = matvec(&v, rows, cols, &x, tokens);
            let (c, s) = quant::quantize_fp8_rows(&v, rows, cols);
            let e8 = rel(&matvec(&quant::dequantize_fp8(&c, &s, rows, cols), rows, cols, &x, tokens), &y);
            let e4 = if cols % quant::NVFP4_BLOCK == 0 {
                let (p, b, g) = quant::quantize_nvfp4(&v, rows, cols);
                rel(&matvec(&quant::dequantize_nvfp4(&p, &b, g, rows, cols), rows, cols, &x, tokens), &y)
            } else {
                f64::NAN
            };
            errs.push((name, e8, e4));
        }
        let stat = |k: usize| {
            let mut v: Vec<f64> = errs.iter().map(|e| if k == 0 { e.1 } else { e.2 }).filter(|x| x.is_finite()).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            (v.first().copied().unwrap_or(f64::NAN), v.get(v.len() / 2).copied().unwrap_or(f64::NAN), v.last().copied().unwrap_or(f64::NAN))
        };
        let ((a8, m8, x8), (a4, m4, x4)) = (stat(0), stat(1));
        println!("\n## {comp}: {} layers, rel L2 of W·x (min / median / max)\n", errs.len());
        println!("| format | min | median | max |\n|---|---|---|---|");
        println!("| fp8 | {a8:.2e} | {m8:.2e} | {x8:.2e} |");
        println!("| nvfp4 | {a4:.2e} | {m4:.2e} | {x4:.2e} |");
        if let Some(worst) = errs.iter().max_by(|a, b| a.2.total_cmp(&b.2)) {
            println!("worst nvfp4 layer: {} ({:.2e}; fp8 {:.2e})", worst.0, worst.2, worst.1);
        }
    }
    // End to end: the DiT with stored / fp8 / nvfp4 weights, f32 compute on the CPU.
    let tdir = diffusers::component_dir(&FsSource, &model, "transformer").map_err(|e| e.to_string())?;
    let w = Weights::open_dir(&FsSource, &tdir, "diffusion_pytorch_model").map_err(|e| e.to_string())?;
    let cfg = SanaVideoTransformer3DModel::read_config(&FsSource, &tdir).map_err(|e| e.to_string())?;
    let device = device::create(BackendKind::Cpu).map_err(|e| e.to_string())?;
    let [b, f, h, wd] = latent;
    let x: Vec<f32> = (0..b * cfg.in_channels * f * h * wd).map(|_| gauss()).collect();
    let y: Vec<f32> = (0..b * 32 * cfg.caption_channels).map(|_| gauss()).collect();
    let mut outs = Vec::new();
    for format in [None, Some(Format::Fp8), Some(Format::Nvfp4)] {
        let dir = match format {
            None => tdir.clone(),
            Some(fmt) => {
                let (bytes, _) = quant::quantize_weights(&w, fmt).map_err(|e| e.to_string())?;
                let d = std::env::temp_dir().join(format!("quant-error-{}-{}", std::process::id(), fmt.name()));
                std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
                std::fs::copy(format!("{tdir}/config.json"), d.join("config.json")).map_err(|e| e.to_string())?;
                std::fs::write(d.join("diffusion_pytorch_model.safetensors"), bytes).map_err(|e| e.to_string())?;
                d.to_string_lossy().to_string()
            }
        };
        let (m, _) = SanaVideoTransformer3DModel::load(&FsSource, &dir, &device, DType::F32).map_err(|e| e.to_string())?;
        let xt: Tensor<5> = tensor_from_f32(x.clone(), vec![b, cfg.in_channels, f, h, wd], &device, DType::F32);
        let yt: Tensor<3> = tensor_from_f32(y.clone(), vec![b, 32, cfg.caption_channels], &device, DType::F32);
        let out = m.forward(xt, yt, &Timesteps::PerSample(vec![500.0; b]), None).map_err(|e| e.to_string())?;
        outs.push(out.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?);
        if format.is_some() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("\n## DiT output at latent {b}x{}x{f}x{h}x{wd}, t = 500, 32 random caption tokens (f32 compute)\n", cfg.in_channels);
    println!("| weights | rel L2 against the stored weights |\n|---|---|");
    println!("| fp8 | {:.3e} |\n| nvfp4 | {:.3e} |", rel(&outs[1], &outs[0]), rel(&outs[2], &outs[0]));
    Ok(())
}
