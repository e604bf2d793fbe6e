//! Times SANA's prompt encoding (Gemma-2 text encoder, prompt + negative prompt, as
//! `SanaVideoPipeline.encode_prompt`) and reports device memory.
//!
//! ```text
//! cargo run --release -p sana-video-benches --bin text-encode -- \
//!     --model PIPELINE_DIR [--backend cpu|wgpu|vulkan|cuda] [--dtype f32|f16|bf16] [--warmup 1] [--iters 5]
//! ```
//! PIPELINE_DIR holds `tokenizer/` and `text_encoder/` (e.g. a random full-size Gemma-2-2B
//! from tools/fullsize_text_encoder.py). The figure is the median wall time of `--iters`
//! encodes after `--warmup`, each ending in a read-back of both embeddings. Memory is
//! what the device allocator reports (weights in use after loading, reserved after the
//! encodes, reserved after `unload`).

use std::time::Instant;

use burn::tensor::DType;
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::FsSource;
use sana_video_core::models::text_encoder::{PromptOptions, TextEncoder, DEFAULT_NEGATIVE_PROMPT};

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut model, mut backend, mut dtype) = (None, None, DType::F32);
    let (mut warmup, mut iters) = (1usize, 5usize);
    let mut prompt = "A small red ball bounces across a wooden floor, casting a soft shadow.".to_string();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--model" => model = Some(val),
            "--backend" => backend = Some(BackendKind::parse(&val).map_err(|e| e.to_string())?),
            "--dtype" => dtype = device::parse_dtype(&val).map_err(|e| e.to_string())?,
            "--prompt" => prompt = val,
            "--warmup" => warmup = val.parse().map_err(|_| "--warmup: integer")?,
            "--iters" => iters = val.parse().map_err(|_| "--iters: integer")?,
            other => return Err(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let dir = model.ok_or("--model PIPELINE_DIR is required")?;
    let (kind, device) = match backend {
        Some(k) => (k, device::create(k).map_err(|e| e.to_string())?),
        None => device::best_available().map_err(|e| e.to_string())?,
    };
    let t0 = Instant::now();
    let (te, _) = TextEncoder::load(&FsSource, &dir, &device, dtype).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    let after_load = device.memory_pool_usage();
    let cfg = te.model.config.clone();
    let opts = PromptOptions { motion_score: Some(30), ..Default::default() };
    let prompts = vec![prompt];
    let negatives = vec![DEFAULT_NEGATIVE_PROMPT.to_string()];
    let pt = sana_video_core::models::text_encoder::prompt::tokenize_prompts(&te.tokenizer, &prompts, &opts)
        .map_err(|e| e.to_string())?;
    let tokens = pt.tokens.len + opts.max_sequence_length;
    let run = || -> Result<f64, String> {
        device.sync().map_err(|e| format!("{e:?}"))?;
        let start = Instant::now();
        let enc = te.encode(&prompts, Some(&negatives), &opts).map_err(|e| e.to_string())?;
        let _ = enc.prompt.embeds.into_data();
        let _ = enc.negative.map(|n| n.embeds.into_data());
        Ok(start.elapsed().as_secs_f64())
    };
    let first = run()?;
    for _ in 1..warmup {
        run()?;
    }
    let mut times: Vec<f64> = (0..iters.max(1)).map(|_| run()).collect::<Result<_, _>>()?;
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let after_run = device.memory_pool_usage();
    te.unload();
    let after_unload = device.memory_pool_usage();
    let params = cfg.device_parameter_count() as f64;
    println!(
        "# text-encode: backend {} dtype {:?} model {dir} ({} layers, {:.3} B params on the device) loaded in {:.1} s",
        device::name(kind),
        dtype,
        cfg.num_hidden_layers,
        params / 1e9,
        load_s
    );
    println!("| tokens (prompt + negative) | first s | median s | min s | max s | TFLOP/s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} + {} | {first:.4} | {median:.4} | {:.4} | {:.4} | {:.2} |",
        pt.tokens.len,
        opts.max_sequence_length,
        times[0],
        times[times.len() - 1],
        2.0 * params * tokens as f64 / median / 1e12
    );
    if let (Some(a), Some(r), Some(u)) = (after_load, after_run, after_unload) {
        println!(
            "memory: weights in use {} (reserved {}); after encoding reserved {}; after unload in use {}, reserved {}",
            gb(a.bytes_in_use),
            gb(a.bytes_reserved),
            gb(r.bytes_reserved),
            gb(u.bytes_in_use),
            gb(u.bytes_reserved)
        );
    }
    Ok(())
}
