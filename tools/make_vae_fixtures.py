#!/usr/bin/env python3
"""Reference fixtures for the VAEs: Wan2.1 `AutoencoderKLWan` and LTX-2 `AutoencoderKLLTX2Video`.

Small random checkpoints built with diffusers' own classes and saved with
`save_pretrained` (the `vae/` layout), every parameter random (norm gammas included) and
the latent normalisation lists randomised in the config; float64 reference outputs of
`vae.decode(latents).sample` and `vae.encode(sample).latent_dist.mean`.

Pinned: torch 2.11.0, diffusers 0.42.1 (tools/requirements-fixtures.txt). Regenerate:

    python3 tools/make_vae_fixtures.py --out tests/fixtures/vae

Per case: <case>/vae/{config.json, diffusion_pytorch_model.safetensors},
<case>/decode_inputs.safetensors (latents [B, z, T, h, w], f32),
<case>/decode_outputs.safetensors (sample [B, 3, 1 + 4(T-1), 8h, 8w], f32 from float64),
<case>/encode_inputs.safetensors (sample in [-1, 1]), <case>/encode_outputs.safetensors
(latent_mean).
"""
import argparse
import os
import shutil

import torch
from diffusers import AutoencoderKLLTX2Video, AutoencoderKLWan
from safetensors.torch import save_file

WAN_CASES = {
    # 3 latent frames (9 pixel frames), non-square 3x5 latent grid, batch 1.
    "wan_t3_3x5": dict(config=dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                   temperal_downsample=[False, True, True]),
                       batch=1, latent=(3, 3, 5), dtype="float32", seed=31),
    # A single latent frame (one image), batch 2, two res blocks per stage, bf16 weights.
    "wan_t1_b2_bf16": dict(config=dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 4], num_res_blocks=2,
                                       temperal_downsample=[False, True, True]),
                           batch=2, latent=(1, 4, 2), dtype="bfloat16", seed=32),
    # Held out while writing the code: 5 latent frames (17 pixel frames), another
    # temporal pattern, decoder_base_dim != base_dim, z_dim 6.
    "unseen_wan_t5": dict(config=dict(base_dim=8, decoder_base_dim=12, z_dim=6, dim_mult=[1, 2, 3, 3],
                                      num_res_blocks=1, temperal_downsample=[True, True, False]),
                          batch=1, latent=(5, 2, 3), dtype="float32", seed=33),
}


LTX_COMMON = dict(
    in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 16, 32, 32),
    layers_per_block=(1, 1, 2, 1, 1), decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1, 2, 1, 1),
    spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"), upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2), timestep_conditioning=False, patch_size=2, patch_size_t=1, resnet_norm_eps=1e-6,
    scaling_factor=1.0, encoder_causal=True, decoder_causal=False, encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="reflect")

LTX_CASES = {
    # The released layout in miniature: non-causal reflect-padded decoder, causal encoder,
    # 2 latent frames (9 video frames), non-square 2x3 latent grid, patch 2.
    "ltx_t2_2x3": dict(config=dict(LTX_COMMON), batch=1, latent=(2, 2, 3), dtype="float32", seed=41),
    # One latent frame (an image), batch 2, bf16 weights, patch 4, upsample_residual off
    # in one stage.
    "ltx_t1_b2_bf16": dict(config=dict(LTX_COMMON, patch_size=4, upsample_residual=(True, False, True)),
                           batch=2, latent=(1, 2, 2), dtype="bfloat16", seed=42),
    # Held out while writing the code: 3 latent frames (17 video frames), a causal
    # decoder, zero padding in the decoder, reflect in the encoder.
    "unseen_ltx_t3_causal": dict(config=dict(LTX_COMMON, decoder_causal=True, decoder_spatial_padding_mode="zeros",
                                             encoder_spatial_padding_mode="reflect"),
                                 batch=1, latent=(3, 3, 2), dtype="float32", seed=43),
}


def make_ltx_case(root, name, spec):
    case_dir = os.path.join(root, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    gen = torch.Generator().manual_seed(spec["seed"])
    model = AutoencoderKLLTX2Video(**spec["config"])
    randomize(model, gen)
    c = spec["config"]["latent_channels"]
    with torch.no_grad():
        model.latents_mean.copy_(torch.randn(c, generator=gen) * 0.5)
        model.latents_std.copy_(torch.rand(c, generator=gen) * 2 + 0.5)
    vae_dir = os.path.join(case_dir, "vae")
    model.to(getattr(torch, spec["dtype"])).save_pretrained(vae_dir)

    ref = AutoencoderKLLTX2Video.from_pretrained(vae_dir, torch_dtype=torch.float64).eval()
    b, (t, h, w) = spec["batch"], spec["latent"]
    latents = torch.randn(b, c, t, h, w, generator=gen, dtype=torch.float64)
    s = ref.spatial_compression_ratio
    frames = 1 + ref.temporal_compression_ratio * (t - 1)
    sample = (torch.rand(b, 3, frames, s * h, s * w, generator=gen, dtype=torch.float64) * 2 - 1)
    with torch.no_grad():
        dec = ref.decode(latents).sample
        mean = ref.encode(sample).latent_dist.mean
    save_file({"latents": latents.float().contiguous()}, os.path.join(case_dir, "decode_inputs.safetensors"))
    save_file({"sample": dec.float().contiguous()}, os.path.join(case_dir, "decode_outputs.safetensors"))
    save_file({"sample": sample.float().contiguous()}, os.path.join(case_dir, "encode_inputs.safetensors"))
    save_file({"latent_mean": mean.float().contiguous()}, os.path.join(case_dir, "encode_outputs.safetensors"))
    print(f"{name}: decode {tuple(latents.shape)} -> {tuple(dec.shape)}, encode {tuple(sample.shape)} -> "
          f"{tuple(mean.shape)}")


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("gamma"):
                p.copy_((1.0 + 0.3 * r).to(p.dtype))
            elif name.endswith("bias"):
                p.copy_((0.1 * r).to(p.dtype))
            else:
                fan_in = max(1, p[0].numel())
                p.copy_((r * (1.2 / fan_in ** 0.5)).to(p.dtype))


def make_wan_case(root, name, spec):
    case_dir = os.path.join(root, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    gen = torch.Generator().manual_seed(spec["seed"])
    z = spec["config"]["z_dim"]
    cfg = dict(spec["config"])
    cfg["latents_mean"] = (torch.randn(z, generator=gen) * 0.5).tolist()
    cfg["latents_std"] = (torch.rand(z, generator=gen) * 2 + 0.5).tolist()
    model = AutoencoderKLWan(**cfg)
    randomize(model, gen)
    vae_dir = os.path.join(case_dir, "vae")
    model.to(getattr(torch, spec["dtype"])).save_pretrained(vae_dir)

    ref = AutoencoderKLWan.from_pretrained(vae_dir, torch_dtype=torch.float64).eval()
    b, (t, h, w) = spec["batch"], spec["latent"]
    latents = torch.randn(b, z, t, h, w, generator=gen, dtype=torch.float64)
    frames = 1 + 4 * (t - 1)
    sample = (torch.rand(b, 3, frames, 8 * h, 8 * w, generator=gen, dtype=torch.float64) * 2 - 1)
    with torch.no_grad():
        dec = ref.decode(latents).sample
        mean = ref.encode(sample).latent_dist.mean
    save_file({"latents": latents.float().contiguous()}, os.path.join(case_dir, "decode_inputs.safetensors"))
    save_file({"sample": dec.float().contiguous()}, os.path.join(case_dir, "decode_outputs.safetensors"))
    save_file({"sample": sample.float().contiguous()}, os.path.join(case_dir, "encode_inputs.safetensors"))
    save_file({"latent_mean": mean.float().contiguous()}, os.path.join(case_dir, "encode_outputs.safetensors"))
    clamped = (dec.abs() >= 1).double().mean().item()
    print(f"{name}: decode {tuple(latents.shape)} -> {tuple(dec.shape)} ({clamped:.1%} clamped), "
          f"encode {tuple(sample.shape)} -> {tuple(mean.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/vae")
    args = ap.parse_args()
    torch.manual_seed(0)
    for name, spec in WAN_CASES.items():
        make_wan_case(args.out, name, spec)
    for name, spec in LTX_CASES.items():
        make_ltx_case(args.out, name, spec)


if __name__ == "__main__":
    main()
