"""Times diffusers' SanaVideoPipeline on the built-in model with the CLI's defaults (17 frames
of 128x128, 20 steps, CFG 6, empty negative prompt), as the reference for BENCHMARKS.md.

    python3 tools/bench_builtin_diffusers.py --model builtin-model --dtype bf16 --runs 3

Pinned: torch 2.11, diffusers 0.42.1. The VAE runs in f32 (the CLI's default --vae-dtype).
"""
import argparse
import time

import torch
from diffusers import SanaVideoPipeline

PROMPT = "a large red circle moves slowly to the left on a dark blue background"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin-model")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    t0 = time.perf_counter()
    pipe = SanaVideoPipeline.from_pretrained(a.model, torch_dtype=dtype).to(a.device)
    pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    print(f"load {time.perf_counter() - t0:.2f} s ({a.dtype}, VAE f32, {torch.cuda.get_device_name() if a.device == 'cuda' else a.device})")
    for i in range(a.runs):
        if a.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with torch.no_grad():
            out = pipe(prompt=PROMPT, negative_prompt="", height=128, width=128, frames=17, num_inference_steps=20,
                       guidance_scale=6.0, generator=torch.Generator(a.device).manual_seed(42), output_type="np",
                       use_resolution_binning=False).frames[0]
        if a.device == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 1e9 if a.device == "cuda" else float("nan")
        print(f"run {i + 1}: {time.perf_counter() - t:.3f} s, frames {tuple(out.shape)}, peak allocated {peak:.3f} GB")


if __name__ == "__main__":
    main()
