#!/usr/bin/env python3
"""Times diffusers' SanaVideoTransformer3DModel forward on the GPU, the reference our
`dit-forward` benchmark is compared with (same card, same call, same shapes).

    python3 tools/bench_reference.py --model DIR --dtype bfloat16 --latent 1x16x5x16x16 --latent 1x16x21x60x104

Random inputs, 300 text tokens, CUDA events, median of --iters after --warmup; also the
peak GPU memory of the forward.
"""
import argparse
import statistics

import torch
from diffusers import SanaVideoTransformer3DModel

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--dtype", default="bfloat16")
ap.add_argument("--latent", action="append", required=True, help="BxCxFxHxW")
ap.add_argument("--text-len", type=int, default=300)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--iters", type=int, default=3)
ap.add_argument("--profile", action="store_true", help="one more forward per size under torch.profiler: top CUDA kernels")
args = ap.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dtype = getattr(torch, args.dtype)
model = SanaVideoTransformer3DModel.from_pretrained(args.model, torch_dtype=dtype).cuda().eval()
print(f"# diffusers reference: {args.dtype}, torch {torch.__version__}, {torch.cuda.get_device_name()}")
print("| latent [B,C,F,H,W] | tokens | median s | min s | max s | peak GiB |")
print("|---|---|---|---|---|---|")
for lat in args.latent:
    b, c, f, h, w = map(int, lat.split("x"))
    pt, ph, pw = model.config.patch_size
    tokens = b * (f // pt) * (h // ph) * (w // pw)
    x = torch.randn(b, c, f, h, w, device="cuda", dtype=dtype)
    y = torch.randn(b, args.text_len, model.config.caption_channels, device="cuda", dtype=dtype)
    t = torch.full((b,), 500.0, device="cuda")
    times = []
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            model(hidden_states=x, encoder_hidden_states=y, timestep=t, return_dict=False)
            e.record()
            torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(s.elapsed_time(e) / 1000)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"| {lat} | {tokens} | {statistics.median(times):.4f} | {min(times):.4f} | {max(times):.4f} | {peak:.1f} |")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(hidden_states=x, encoder_hidden_states=y, timestep=t, return_dict=False)
            torch.cuda.synchronize()
        print(f"\n## torch.profiler, latent {lat}: top CUDA kernels\n")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90))
