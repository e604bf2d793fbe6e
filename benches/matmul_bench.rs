//! Times each f16/bf16 tensor-core routine (`HALF_ROUTINES`) on the DiT's GEMM shapes at
//! 480p, 81 frames, CFG batch 2, and checks each result against an exact f32 product.
//!
//! ```text
//! matmul-bench [--backend cuda|wgpu] [--dtype bf16|f16] [--tokens 65520] [--iters 5] [--routine NAME]...
//! ```
//! `--routine` (repeatable) times only the routines named (`cublas` is cuBLASLt, CUDA builds
//! only; each of its products ends with a wait, as in the engine). Prints one row per routine and shape (mean ms over back-to-back launches, TFLOP/s, rel L2 error) and, last, the
//! routine with the least GEMM time per DiT forward (`best-routine NAME`), weighting each
//! shape by how often a forward runs it; routines that fail a shape or miss the exact
//! product by more than 1e-2 are left out.

use std::time::Instant;

use burn::tensor::{Distribution, FloatDType, Tensor};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::kernels::matmul::{matmul, matmul_half_routine, HALF_ROUTINES};
use sana_video_core::kernels::Impl;

fn main() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut backend, mut dtype, mut tokens, mut iters) = (BackendKind::Cuda, FloatDType::BF16, 65_520usize, 5usize);
    let mut only: Vec<String> = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().ok_or_else(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--backend" => backend = BackendKind::parse(&val).map_err(|e| e.to_string())?,
            "--dtype" => {
                dtype = match val.as_str() {
                    "bf16" => FloatDType::BF16,
                    "f16" => FloatDType::F16,
                    other => return Err(format!("--dtype {other}: bf16 or f16")),
                }
            }
            "--tokens" => tokens = val.parse().map_err(|_| "--tokens: integer")?,
            "--iters" => iters = val.parse().map_err(|_| "--iters: integer")?,
            "--routine" if HALF_ROUTINES.contains(&val.as_str()) => only.push(val),
            "--routine" => return Err(format!("--routine {val}: one of {}", HALF_ROUTINES.join(", "))),
            other => return Err(format!("unknown flag {other}")),
        }
        i += 2;
    }
    let device = device::create(backend).map_err(|e| e.to_string())?;
    // (name, batch, m, k, n, uses per DiT forward: 20 layers)
    let half_tokens = tokens / 2;
    let shapes = [
        ("2240->2240 (q,k,v,out,cross q/out)", 1, tokens, 2240, 2240, 6 * 20),
        ("2240->6720 (ff.conv_temp, three taps)", 1, tokens, 2240, 6720, 20),
        ("2240->13440 (ff.conv_inverted)", 1, tokens, 2240, 13440, 20),
        ("6720->2240 (ff.conv_point)", 1, tokens, 6720, 2240, 20),
        ("cross logits [40] 112->300", 40, half_tokens, 112, 300, 20),
        ("cross p.v [40] 300->112", 40, half_tokens, 300, 112, 20),
    ];
    println!("# matmul-bench: backend {} dtype {dtype:?}, {tokens} tokens", device::name(backend));
    println!("| shape | routine | mean ms | TFLOP/s | rel L2 vs exact f32 (first 4096 rows) |");
    println!("|---|---|---|---|---|");
    let mut per_forward = vec![0f64; HALF_ROUTINES.len()];
    let mut ran = vec![true; HALF_ROUTINES.len()];
    for (name, batch, m, k, n, uses) in shapes {
        let a = Tensor::<3>::random([batch, m, k], Distribution::Normal(0.0, 1.0), &device).cast(dtype);
        let b = Tensor::<3>::random([batch, k, n], Distribution::Normal(0.0, 1.0), &device).cast(dtype);
        // The error is checked on the first rows only: the whole f32 product of the widest
        // shape (3.5 GB) exceeds the largest buffer a wgpu device allocates (2 GiB on Vulkan).
        let rows = m.min(4096);
        let exact = matmul(a.clone().narrow(1, 0, rows).cast(FloatDType::F32), b.clone().cast(FloatDType::F32), Impl::Auto);
        let exact_norm = exact.clone().square().sum().into_scalar::<f32>().sqrt();
        let flops = 2.0 * (batch * m * k * n) as f64;
        for (r, routine) in HALF_ROUTINES.iter().enumerate() {
            if !only.is_empty() && !only.iter().any(|o| o == routine) {
                ran[r] = false;
                continue;
            }
            let Some(out) = matmul_half_routine(a.clone(), b.clone(), r) else {
                println!("| {name} | {routine} | unavailable | | |");
                ran[r] = false;
                continue;
            };
            let err = (out.narrow(1, 0, rows).cast(FloatDType::F32) - exact.clone()).square().sum().into_scalar::<f32>().sqrt() / exact_norm;
            // Back-to-back launches between two syncs: a sync per product would add its own
            // latency to sub-millisecond products.
            device.sync().map_err(|e| format!("{e:?}"))?;
            let t = Instant::now();
            for _ in 0..iters.max(1) {
                drop(matmul_half_routine(a.clone(), b.clone(), r));
            }
            device.sync().map_err(|e| format!("{e:?}"))?;
            let med = t.elapsed().as_secs_f64() / iters.max(1) as f64;
            per_forward[r] += med * uses as f64;
            // A routine that launches but computes something else is not a candidate
            // (bf16 rounding of the result alone is ~2e-3).
            if !(err < 1e-2) {
                ran[r] = false;
            }
            println!("| {name} | {routine} | {:.3} | {:.1} | {err:.2e} |", med * 1e3, flops / med / 1e12);
        }
    }
    println!("\n| routine | GEMM seconds per DiT forward |\n|---|---|");
    let mut best: Option<(usize, f64)> = None;
    for (r, routine) in HALF_ROUTINES.iter().enumerate() {
        if !ran[r] {
            continue;
        }
        println!("| {routine} | {:.4} |", per_forward[r]);
        if best.is_none_or(|(_, t)| per_forward[r] < t) {
            best = Some((r, per_forward[r]));
        }
    }
    match best {
        Some((r, _)) => println!("best-routine {}", HALF_ROUTINES[r]),
        None => println!("best-routine none"),
    }
    Ok(())
}
