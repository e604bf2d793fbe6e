#!/usr/bin/env python3
"""Reference fixtures for the SANA-Video DiT (SanaVideoTransformer3DModel).

Builds small random checkpoints with diffusers' own class, saves them with
`save_pretrained` in the official diffusers folder layout, runs the reference
forward in float64 and stores inputs and outputs next to them.

Pinned: torch 2.11.0, diffusers 0.42.1 (see tools/requirements-fixtures.txt).
Regenerate (here or on the device machine):

    python3 -m pip install -r tools/requirements-fixtures.txt
    python3 tools/make_dit_fixtures.py --out tests/fixtures/dit

Layout written per case:
    <case>/model_index.json                    (names the transformer component)
    <case>/transformer/config.json
    <case>/transformer/diffusion_pytorch_model*.safetensors (+ .index.json when sharded)
    <case>/inputs.safetensors    hidden_states, encoder_hidden_states, timestep,
                                 [encoder_attention_mask]   (all float32)
    <case>/outputs.safetensors   sample (float32, computed in float64)

Notes on the float64 reference: diffusers' linear-attention processor upcasts
with `.float()` and RMSNorm takes its statistics in float32, so those two
spots run in float32 even in a float64 model. Their rounding (~1e-7 relative)
is far below the 1e-5 tolerance the Rust tests use.
"""
import argparse
import json
import math
import os

import torch
from diffusers import SanaVideoTransformer3DModel
from safetensors.torch import save_file

# name -> (config overrides, shape of inputs, options)
CASES = {
    # patch (1,2,2) like 480p; 3 frames, non-square grid; batch 2 with different
    # text padding; per-sample timesteps; mlp ratio 2.5 -> hidden 80.
    "p122_b2_mask": dict(
        config=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
                    num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=16,
                    cross_attention_dim=32, caption_channels=24, mlp_ratio=2.5, patch_size=(1, 2, 2)),
        batch=2, frames=3, height=6, width=10, text_len=7, text_valid=[7, 3], per_token=False,
        dtype="float32", shard=None, seed=1),
    # patch (1,1,1) like 720p; odd grid 5x3x7; per-token timesteps [B, N];
    # mlp ratio 2.7 -> hidden int(97.2) = 97; weights stored in bf16.
    "p111_pertoken_bf16": dict(
        config=dict(in_channels=8, out_channels=8, num_attention_heads=3, attention_head_dim=12,
                    num_layers=2, num_cross_attention_heads=3, cross_attention_head_dim=12,
                    cross_attention_dim=36, caption_channels=20, mlp_ratio=2.7, patch_size=(1, 1, 1)),
        batch=2, frames=5, height=3, width=7, text_len=6, text_valid=[6, 2], per_token=True,
        dtype="bfloat16", shard=None, seed=2),
    # single frame, tall grid, batch 1 without a mask, sharded weights in f16,
    # out_channels != in_channels.
    "p122_single_frame_sharded": dict(
        config=dict(in_channels=6, out_channels=3, num_attention_heads=2, attention_head_dim=18,
                    num_layers=3, num_cross_attention_heads=2, cross_attention_head_dim=18,
                    cross_attention_dim=36, caption_channels=16, mlp_ratio=3.0, patch_size=(1, 2, 2)),
        batch=1, frames=1, height=10, width=4, text_len=5, text_valid=None, per_token=False,
        dtype="float16", shard="40KB", seed=3),
    # Held-out shapes ("unseen"): not used while writing the Rust code.
    "unseen_p122_wide": dict(
        config=dict(in_channels=16, out_channels=16, num_attention_heads=4, attention_head_dim=12,
                    num_layers=2, num_cross_attention_heads=4, cross_attention_head_dim=12,
                    cross_attention_dim=48, caption_channels=40, mlp_ratio=1.7, patch_size=(1, 2, 2),
                    attention_bias=True),
        batch=2, frames=4, height=4, width=14, text_len=9, text_valid=[4, 9], per_token=False,
        dtype="float32", shard=None, seed=11),
    "unseen_p111_pertoken": dict(
        config=dict(in_channels=5, out_channels=5, num_attention_heads=2, attention_head_dim=24,
                    num_layers=2, num_cross_attention_heads=3, cross_attention_head_dim=16,
                    cross_attention_dim=48, caption_channels=12, mlp_ratio=2.3, patch_size=(1, 1, 1)),
        batch=2, frames=6, height=5, width=2, text_len=4, text_valid=[1, 3], per_token=True,
        dtype="float32", shard=None, seed=12),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def randomize(model, gen):
    """Every parameter random (nothing left at a zero init, the temporal conv included).

    Weights ~ N(0, 1/fan_in) keep activations O(1) through the layers; 1-D
    parameters (biases, norm weights) are centred on 0 (biases) or 1 (norms).
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("scale_shift_table"):
                p.copy_(r * 0.3)
            elif p.ndim == 1 and "norm" in name:
                p.copy_(1.0 + 0.2 * r)
            elif p.ndim == 1:
                p.copy_(0.2 * r)
            else:
                fan_in = p[0].numel()
                p.copy_(r / math.sqrt(fan_in))


def make_case(root, name, spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = dict(spec["config"])
    model = SanaVideoTransformer3DModel(**cfg)
    randomize(model, gen)
    store_dtype = DTYPES[spec["dtype"]]
    model = model.to(store_dtype)
    case_dir = os.path.join(root, name)
    kwargs = {"safe_serialization": True}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    model.save_pretrained(os.path.join(case_dir, "transformer"), **kwargs)
    with open(os.path.join(case_dir, "model_index.json"), "w") as f:
        json.dump({"_class_name": "SanaVideoPipeline", "_diffusers_version": "0.42.1",
                   "transformer": ["diffusers", "SanaVideoTransformer3DModel"]}, f, indent=2)

    # Reference in float64 from exactly the stored (possibly bf16-rounded) weights,
    # reloaded through diffusers' own loader (this also proves the folder loads). Casting
    # the in-memory model instead would also round the RoPE buffers to bf16.
    model = SanaVideoTransformer3DModel.from_pretrained(
        os.path.join(case_dir, "transformer"), torch_dtype=torch.float64).eval()

    b, fr, h, w = spec["batch"], spec["frames"], spec["height"], spec["width"]
    c_in = cfg["in_channels"]
    pt, ph, pw = cfg["patch_size"]
    n_tokens = (fr // pt) * (h // ph) * (w // pw)
    x = torch.randn(b, c_in, fr, h, w, generator=gen, dtype=torch.float32)
    y = torch.randn(b, spec["text_len"], cfg["caption_channels"], generator=gen, dtype=torch.float32)
    if spec["per_token"]:
        t = torch.rand(b, n_tokens, generator=gen, dtype=torch.float32) * 1000.0
        t[:, : n_tokens // 3] = 0.0  # like image-to-video: first-frame tokens at t = 0
    else:
        t = torch.rand(b, generator=gen, dtype=torch.float32) * 1000.0
    inputs = {"hidden_states": x, "encoder_hidden_states": y, "timestep": t}
    mask = None
    if spec["text_valid"] is not None:
        mask = torch.zeros(b, spec["text_len"], dtype=torch.float32)
        for i, valid in enumerate(spec["text_valid"]):
            mask[i, :valid] = 1.0
        inputs["encoder_attention_mask"] = mask

    with torch.no_grad():
        out = model(
            hidden_states=x.double(),
            encoder_hidden_states=y.double(),
            timestep=t.double(),
            encoder_attention_mask=None if mask is None else mask.double(),
            return_dict=False,
        )[0]
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(case_dir, "inputs.safetensors"))
    save_file({"sample": out.float().contiguous()}, os.path.join(case_dir, "outputs.safetensors"))
    print(f"{name}: tokens={n_tokens} out={tuple(out.shape)} |out|={out.abs().mean():.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/dit")
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.manual_seed(0)
    for name, spec in CASES.items():
        if args.only and name not in args.only:
            continue
        make_case(args.out, name, spec)


if __name__ == "__main__":
    main()
