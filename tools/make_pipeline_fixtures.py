#!/usr/bin/env python3
"""End-to-end fixtures: diffusers' SanaVideoPipeline / SanaImageToVideoPipeline on small
random pipelines saved with `save_pretrained`, with injected initial noise.

Two pipeline folders: `wan/` (tiny SanaVideoTransformer3DModel with sample_size 30, the
prompt fixtures' Gemma-2 encoder and tokenizer, a tiny AutoencoderKLWan, the released
DPMSolverMultistepScheduler config with flow_shift 8) and `ltx/` (the same with a tiny
AutoencoderKLLTX2Video and sample_size 22). Every weight is random and stored in bf16;
the reference reloads the folders with `torch_dtype=float64`, so model evaluations are
float64 while the pipeline's own latents and scheduler arithmetic stay float32, as in the
engine. Each case runs the pipeline with `latents=` (our noise, saved) and records the
final latents (callback at the last step) and the frames (`output_type="np"`).

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (tools/requirements-fixtures.txt).
Regenerate (needs tests/fixtures/prompt from tools/make_text_encoder_fixtures.py):

    python3 tools/make_pipeline_fixtures.py --out tests/fixtures/pipeline

Writes <out>/{wan,ltx}/ (pipeline folders), <out>/cases.json and per case
<out>/<case>.safetensors with `init_latents` [1,C,F,h,w], `final_latents`, `frames`
[T,H,W,3] (f32 in [0,1]) and, for image-to-video, `image` [H,W,3] (uint8 values as f32);
the image is also saved as <case>.png.
"""
import argparse
import json
import math
import os
import shutil

import numpy as np
import torch
from PIL import Image
from diffusers import (AutoencoderKLLTX2Video, AutoencoderKLWan, DPMSolverMultistepScheduler,
                       FlowMatchEulerDiscreteScheduler, SanaImageToVideoPipeline, SanaVideoPipeline,
                       SanaVideoTransformer3DModel, UniPCMultistepScheduler)
from safetensors.torch import save_file
from transformers import AutoTokenizer, Gemma2Model

from make_vae_fixtures import LTX_COMMON

NEG = "blurry, distorted, static"


def randomize(model, gen, vae=False):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("scale_shift_table"):
                p.copy_(r * 0.3)
            elif vae and name.endswith("gamma"):
                p.copy_(1.0 + 0.3 * r)
            elif p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(1.0 + 0.2 * r)
            elif p.ndim == 1:
                p.copy_(0.1 * r)
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(r * (1.0 / math.sqrt(fan_in)))


def dit(in_ch, sample_size, gen):
    m = SanaVideoTransformer3DModel(
        in_channels=in_ch, out_channels=in_ch, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=32,
        mlp_ratio=2.5, patch_size=(1, 2, 2), sample_size=sample_size)
    randomize(m, gen)
    return m


def scheduler():
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0,
        solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="zero")


def save_pipeline(root, name, vae, transformer, prompt_dir):
    tok = AutoTokenizer.from_pretrained(os.path.join(prompt_dir, "tokenizer"))
    te = Gemma2Model.from_pretrained(os.path.join(prompt_dir, "text_encoder"), torch_dtype=torch.float32)
    pipe = SanaVideoPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=transformer, scheduler=scheduler())
    out = os.path.join(root, name)
    pipe.to(torch.bfloat16).save_pretrained(out)
    return out


def sampler(kind, shift=8.0):
    if kind == "dpm++":
        return scheduler()
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    if kind == "unipc":
        return UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                       use_flow_sigmas=True, flow_shift=shift)
    raise ValueError(kind)


CASES = [
    dict(name="t2v_dpm", pipeline="wan", sampler="dpm++", height=32, width=64, frames=9, steps=4, cfg=4.5,
         prompt="a red ball rolls to the left", seed=1),
    dict(name="t2v_euler", pipeline="wan", sampler="euler", height=32, width=64, frames=9, steps=3, cfg=4.5,
         prompt="a blue square moves up", seed=2),
    dict(name="t2v_unipc", pipeline="wan", sampler="unipc", height=64, width=32, frames=5, steps=5, cfg=3.0,
         prompt="A Green Triangle grows slowly", seed=3),
    dict(name="t2v_nocfg_motion", pipeline="wan", sampler="dpm++", height=32, width=32, frames=5, steps=3, cfg=1.0,
         prompt="a yellow star circles", motion=30, seed=4),
    dict(name="t2v_binning", pipeline="wan", sampler="dpm++", height=40, width=72, frames=1, steps=2, cfg=2.0,
         prompt="an orange circle", binning=True, seed=5),
    dict(name="i2v_euler", pipeline="wan", sampler="euler", height=32, width=64, frames=9, steps=3, cfg=3.0,
         prompt="the ball bounces", image=True, seed=6),
    dict(name="i2v_unipc", pipeline="wan", sampler="unipc", height=32, width=32, frames=9, steps=4, cfg=3.0,
         prompt="the square spins", image=True, seed=7),
    dict(name="ltx_t2v_dpm", pipeline="ltx", sampler="dpm++", height=64, width=96, frames=9, steps=3, cfg=4.0,
         prompt="a purple cube drifts right", seed=8),
    dict(name="ltx_i2v_euler", pipeline="ltx", sampler="euler", height=64, width=64, frames=9, steps=2, cfg=4.0,
         prompt="a pink disc shrinks", image=True, seed=9),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/pipeline")
    ap.add_argument("--prompt-fixtures", default="tests/fixtures/prompt/pipeline")
    a = ap.parse_args()
    torch.set_num_threads(2)
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    gen = torch.Generator().manual_seed(2026)

    wan = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                           temperal_downsample=[False, True, True],
                           latents_mean=(torch.randn(4, generator=gen) * 0.5).tolist(),
                           latents_std=(torch.rand(4, generator=gen) * 2 + 0.5).tolist())
    randomize(wan, gen, vae=True)
    save_pipeline(a.out, "wan", wan, dit(4, 30, gen), a.prompt_fixtures)

    # The released LTX-2 layout in miniature, as the VAE fixtures use it.
    ltx = AutoencoderKLLTX2Video(**LTX_COMMON, spatial_compression_ratio=16, temporal_compression_ratio=8)
    randomize(ltx, gen, vae=True)
    with torch.no_grad():
        ltx.latents_mean.copy_(torch.randn(8, generator=gen) * 0.5)
        ltx.latents_std.copy_(torch.rand(8, generator=gen) * 2 + 0.5)
    save_pipeline(a.out, "ltx", ltx, dit(8, 22, gen), a.prompt_fixtures)

    meta = []
    for case in CASES:
        folder = os.path.join(a.out, case["pipeline"])
        image = case.get("image", False)
        cls = SanaImageToVideoPipeline if image else SanaVideoPipeline
        pipe = cls.from_pretrained(folder, torch_dtype=torch.float64)
        pipe.scheduler = sampler(case["sampler"])
        pipe.set_progress_bar_config(disable=True)
        binning = case.get("binning", False)
        h, w = case["height"], case["width"]
        gh, gw = (pipe.video_processor.classify_height_width_bin(
            h, w, {"0.5": [448.0, 896.0], "0.57": [480.0, 832.0], "0.68": [528.0, 768.0], "0.78": [560.0, 720.0],
                   "1.0": [624.0, 624.0], "1.13": [672.0, 592.0], "1.29": [720.0, 560.0], "1.46": [768.0, 528.0],
                   "1.67": [816.0, 496.0], "1.75": [832.0, 480.0], "2.0": [896.0, 448.0]}) if binning else (h, w))
        st, ss = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
        c = pipe.transformer.config.in_channels
        g = torch.Generator().manual_seed(case["seed"])
        lat = torch.randn(1, c, (case["frames"] - 1) // st + 1, gh // ss, gw // ss, generator=g, dtype=torch.float32)
        prompt = case["prompt"] + (f" motion score: {case['motion']}." if "motion" in case else "")
        captured = {}

        def grab(p, i, t, kw):
            captured["latents"] = kw["latents"].detach().clone()
            return {}

        kwargs = dict(prompt=prompt, negative_prompt=NEG, height=h, width=w, frames=case["frames"],
                      num_inference_steps=case["steps"], guidance_scale=case["cfg"], latents=lat.clone(),
                      output_type="np", use_resolution_binning=binning, callback_on_step_end=grab)
        tensors = {"init_latents": lat.contiguous()}
        if image:
            rng = np.random.default_rng(case["seed"])
            arr = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
            Image.fromarray(arr).save(os.path.join(a.out, case["name"] + ".png"))
            kwargs["image"] = Image.open(os.path.join(a.out, case["name"] + ".png"))
            tensors["image"] = torch.from_numpy(arr.astype(np.float32))
        with torch.no_grad():
            frames = pipe(**kwargs).frames[0]
        tensors["final_latents"] = captured["latents"].float().contiguous()
        tensors["frames"] = torch.from_numpy(np.ascontiguousarray(frames)).float()
        save_file(tensors, os.path.join(a.out, case["name"] + ".safetensors"))
        entry = dict(case, negative_prompt=NEG, motion=case.get("motion"), binning=binning, image=image,
                     gen_height=gh, gen_width=gw)
        meta.append(entry)
        print(f"{case['name']}: latents {tuple(lat.shape)} -> frames {frames.shape}, "
              f"range [{frames.min():.3f}, {frames.max():.3f}], final |x| {captured['latents'].abs().mean():.3f}")
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
