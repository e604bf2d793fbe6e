#!/usr/bin/env python3
"""Float64 diffusers reference on a full-size checkpoint for a small input, to compare
with `sana-video debug transformer` on real shapes (2240 wide, 20 layers, head dim 112).

    python3 tools/fullsize_parity.py --model DIR --out DIR2 [--device cuda]
writes DIR2/inputs.safetensors and DIR2/outputs.safetensors (same layout as the fixtures).
"""
import argparse
import os

import torch
from diffusers import SanaVideoTransformer3DModel
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--device", default="cuda")
ap.add_argument("--latent", default="2x16x3x8x12")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
model = SanaVideoTransformer3DModel.from_pretrained(args.model, torch_dtype=torch.float64).to(args.device).eval()
g = torch.Generator().manual_seed(5)
b, c, f, h, w = map(int, args.latent.split("x"))
x = torch.randn(b, c, f, h, w, generator=g)
y = torch.randn(b, 20, model.config.caption_channels, generator=g)
t = torch.tensor([999.0, 123.5][:b])
mask = torch.ones(b, 20)
mask[-1, 9:] = 0
with torch.no_grad():
    out = model(hidden_states=x.double().to(args.device), encoder_hidden_states=y.double().to(args.device),
                timestep=t.double().to(args.device), encoder_attention_mask=mask.double().to(args.device),
                return_dict=False)[0]
save_file({"hidden_states": x, "encoder_hidden_states": y, "timestep": t, "encoder_attention_mask": mask},
          os.path.join(args.out, "inputs.safetensors"))
save_file({"sample": out.float().cpu().contiguous()}, os.path.join(args.out, "outputs.safetensors"))
print("reference written:", tuple(out.shape))
