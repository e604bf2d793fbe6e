#!/usr/bin/env python3
"""A random full-size LTX-2 VAE with the 720p checkpoint's config (MODEL-SPEC §7.2) and
diffusers' own decode of it: a parity reference and timings / peak memory at 720p.

    python3 tools/fullsize_ltx2_vae.py --out /tmp/ltxvae [--device cuda]

Writes OUT/vae/ (AutoencoderKLLTX2Video, float32, `save_pretrained`),
OUT/inputs.safetensors (`latents` of the parity size), OUT/reference.safetensors
(`sample`, diffusers float32, TF32 off) and prints a Markdown table of decode times.
Pinned stack: tools/requirements-fixtures.txt.
"""
import argparse
import time

import torch
from diffusers import AutoencoderKLLTX2Video
from safetensors.torch import save_file

CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(256, 512, 1024, 2048),
    layers_per_block=(4, 6, 6, 2, 2), decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 5, 5, 5), spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"), upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2), timestep_conditioning=False, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6,
    scaling_factor=1.0, encoder_causal=True, decoder_causal=False, encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="reflect", spatial_compression_ratio=32, temporal_compression_ratio=8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parity", default="1x2x11x20", help="latent BxTxHxW of the parity case")
    ap.add_argument("--latent", action="append", default=None, help="latent BxTxHxW to time (repeatable)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    with torch.device(args.device):
        vae = AutoencoderKLLTX2Video(**CONFIG)
    n = sum(p.numel() for p in vae.parameters())
    print(f"AutoencoderKLLTX2Video: {n} parameters ({n / 1e6:.1f} M)")
    vae.save_pretrained(f"{args.out}/vae")
    vae.eval()

    b, t, h, w = (int(v) for v in args.parity.split("x"))
    z = torch.randn(b, 128, t, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decode(z.to(args.device)).sample
    save_file({"latents": z.contiguous()}, f"{args.out}/inputs.safetensors")
    save_file({"sample": ref.float().cpu().contiguous()}, f"{args.out}/reference.safetensors")
    print(f"parity case: latents {tuple(z.shape)} -> sample {tuple(ref.shape)}")
    del ref

    sizes = args.latent or ["1x2x22x40", "1x3x22x40"]
    print(f"| diffusers vae.decode ({torch.cuda.get_device_name()}) | dtype | video frames | total s | s per frame | peak GB |")
    print("|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        vae.to(dtype)
        for s in sizes:
            b, t, h, w = (int(v) for v in s.split("x"))
            z = torch.randn(b, 128, t, h, w, device=args.device, dtype=dtype)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                with torch.no_grad():
                    vae.decode(z[:, :, :1])  # warm-up
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    out = vae.decode(z).sample.float().cpu()
                    dt = time.perf_counter() - start
                frames = out.shape[2]
                print(f"| {s} | {str(dtype)[6:]} | {frames} | {dt:.3f} | {dt / frames:.4f} | "
                      f"{torch.cuda.max_memory_allocated() / 1e9:.2f} |")
                del out
            except torch.OutOfMemoryError:
                print(f"| {s} | {str(dtype)[6:]} | - | out of memory | - | - |")


if __name__ == "__main__":
    main()
