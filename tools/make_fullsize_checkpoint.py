#!/usr/bin/env python3
"""A random full-size SanaVideoTransformer3DModel with an official config (MODEL-SPEC §2).

For `inspect` and loader checks on real tensor names and shapes, and for benchmarks
(random weights time the same as trained ones). Weights are diffusers' own random
init, saved with `save_pretrained` (sharded like the hub checkpoints).

    python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/sana480/transformer
    python3 tools/make_fullsize_checkpoint.py --variant 720p --out /tmp/sana720/transformer --dtype bfloat16
"""
import argparse

import torch
from diffusers import SanaVideoTransformer3DModel

COMMON = dict(
    num_attention_heads=20, attention_head_dim=112, num_layers=20, num_cross_attention_heads=20,
    cross_attention_head_dim=112, cross_attention_dim=2240, caption_channels=2304, mlp_ratio=3.0,
    dropout=0.0, attention_bias=False, norm_elementwise_affine=False, norm_eps=1e-6,
    interpolation_scale=None, guidance_embeds=False, guidance_embeds_scale=0.1,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
)
VARIANTS = {
    "480p": dict(in_channels=16, out_channels=16, sample_size=30, patch_size=(1, 2, 2)),
    "720p": dict(in_channels=128, out_channels=128, sample_size=22, patch_size=(1, 1, 1)),
}

ap = argparse.ArgumentParser()
ap.add_argument("--variant", choices=VARIANTS, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--device", default="cpu", help="where to build the random weights (cuda is much faster)")
args = ap.parse_args()
torch.manual_seed(args.seed)
with torch.device(args.device):
    model = SanaVideoTransformer3DModel(**COMMON, **VARIANTS[args.variant]).to(getattr(torch, args.dtype))
# Small random values for the temporal conv so that branch does real work in benchmarks.
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("conv_temp.weight"):
            p.normal_(0.0, 0.01)
n = sum(p.numel() for p in model.parameters())
print(f"{args.variant}: {n} parameters ({n / 1e9:.4f} B)")
model.save_pretrained(args.out, max_shard_size="5GB")
