#!/usr/bin/env python3
"""A random full-size Wan2.1 VAE (the official config, MODEL-SPEC §7.1) and diffusers'
own decode of it: parity reference at a medium size and timings / peak memory against
the number of frames at 480p.

    python3 tools/fullsize_wan_vae.py --out /tmp/wanvae [--device cuda]

Writes OUT/vae/ (AutoencoderKLWan, float32, `save_pretrained`), OUT/inputs.safetensors
(`latents` [1,16,T,h,w] for the parity size) and OUT/reference.safetensors (`sample`,
diffusers float32 with TF32 off), and prints a Markdown table of diffusers' decode
times. Pinned stack: tools/requirements-fixtures.txt.
"""
import argparse
import time

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parity", default="1x3x30x52", help="latent BxTxHxW of the parity case")
    ap.add_argument("--latent", action="append", default=None, help="latent BxTxHxW to time (repeatable)")
    ap.add_argument("--time-tf32", action="append", default=None, choices=["off", "on"],
                    help="time with cuDNN TF32 off (exact f32) and/or on (PyTorch's default for convs); repeatable, default off")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    with torch.device(args.device):
        vae = AutoencoderKLWan()  # diffusers' defaults are the Wan2.1 release config
        # Small random gammas around 1 so the norms do real work (init is all ones).
        with torch.no_grad():
            for n, p in vae.named_parameters():
                if n.endswith("gamma"):
                    p.add_(torch.randn_like(p) * 0.1)
    n = sum(p.numel() for p in vae.parameters())
    print(f"AutoencoderKLWan: {n} parameters ({n / 1e6:.1f} M)")
    vae.save_pretrained(f"{args.out}/vae")
    vae.eval()

    b, t, h, w = (int(v) for v in args.parity.split("x"))
    z = torch.randn(b, 16, t, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decode(z.to(args.device)).sample
    save_file({"latents": z.contiguous()}, f"{args.out}/inputs.safetensors")
    save_file({"sample": ref.float().cpu().contiguous()}, f"{args.out}/reference.safetensors")
    print(f"parity case: latents {tuple(z.shape)} -> sample {tuple(ref.shape)}")
    del ref

    sizes = args.latent or ["1x2x60x104", "1x6x60x104", "1x11x60x104", "1x21x60x104"]
    for mode in args.time_tf32 or ["off"]:
        torch.backends.cudnn.allow_tf32 = mode == "on"
        time_sizes(vae, sizes, args.device, f"f32, cuDNN TF32 {mode}")


def time_sizes(vae, sizes, device, what):
    print(f"| diffusers vae.decode ({torch.cuda.get_device_name()}, {what}) | video frames | total s | s per frame | peak GB |")
    print("|---|---|---|---|---|")
    for s in sizes:
        b, t, h, w = (int(v) for v in s.split("x"))
        z = torch.randn(b, 16, t, h, w, device=device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():
                vae.decode(z[:, :, :1])  # warm-up
                torch.cuda.synchronize()
                start = time.perf_counter()
                out = vae.decode(z).sample.cpu()
                dt = time.perf_counter() - start
            frames = out.shape[2]
            print(f"| {s} | {frames} | {dt:.3f} | {dt / frames:.4f} | {torch.cuda.max_memory_allocated() / 1e9:.2f} |")
            del out
        except torch.OutOfMemoryError:
            print(f"| {s} | - | out of memory | - | - |")


if __name__ == "__main__":
    main()
