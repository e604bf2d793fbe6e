#!/usr/bin/env python3
"""A random full-size SANA-Video 480p pipeline folder, and diffusers' end-to-end timing.

Builds every component with the released 480p configs and diffusers'/transformers' own
random init (SanaVideoTransformer3DModel 2B, Gemma2Model 2.6B in bf16, AutoencoderKLWan
in f32, the hub's DPMSolverMultistepScheduler config with flow_shift 8) next to the real
Gemma-2 tokenizer (scripts/fetch-gemma-tokenizer.sh), saves it with
`SanaVideoPipeline.save_pretrained`, then times `SanaVideoPipeline.__call__` (81 frames,
832x480, 50 steps, CFG 6, bf16 transformer and text encoder, f32 VAE as the model card
does) with per-stage times from step callbacks and the peak GPU memory.

    python3 tools/fullsize_pipeline.py --tokenizer DIR --out /tmp/sana480p [--steps 50] [--skip-build]

Pinned stack: tools/requirements-fixtures.txt.
"""
import argparse
import os
import shutil
import time

import torch

PROMPT = "A small red ball bounces across a wooden floor, casting a soft shadow."
NEG = ("A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
       "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
       "jitter, and ghosting effects, creating a disorienting visual experience.")


def build(args):
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoPipeline, SanaVideoTransformer3DModel
    from transformers import AutoTokenizer, Gemma2Config, Gemma2Model
    shutil.rmtree(args.out, ignore_errors=True)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        transformer = SanaVideoTransformer3DModel(
            in_channels=16, out_channels=16, num_attention_heads=20, attention_head_dim=112, num_layers=20,
            num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
            caption_channels=2304, mlp_ratio=3.0, attention_bias=False, norm_elementwise_affine=False,
            norm_eps=1e-6, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, sample_size=30,
            patch_size=(1, 2, 2)).to(torch.bfloat16)
        with torch.no_grad():
            for name, p in transformer.named_parameters():
                if name.endswith("conv_temp.weight"):
                    p.normal_(0.0, 0.01)
        text_encoder = Gemma2Model(Gemma2Config()).to(torch.bfloat16)
        vae = AutoencoderKLWan()
        with torch.no_grad():
            for n, p in vae.named_parameters():
                if n.endswith("gamma"):
                    p.add_(torch.randn_like(p) * 0.1)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0,
        solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="zero")
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    pipe = SanaVideoPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    pipe.save_pretrained(args.out, max_shard_size="5GB")
    print(f"built and saved {args.out} in {time.time() - t0:.1f} s")


def bench(args):
    from diffusers import SanaVideoPipeline
    import diffusers
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, diffusers {diffusers.__version__}, "
          f"{torch.cuda.get_device_name()}")
    t0 = time.time()
    pipe = SanaVideoPipeline.from_pretrained(args.out, torch_dtype=torch.bfloat16)
    pipe.vae.to(torch.float32)
    pipe.to("cuda")
    pipe.set_progress_bar_config(disable=True)
    torch.cuda.synchronize()
    load = time.time() - t0
    marks = []

    def cb(p, i, t, kw):
        torch.cuda.synchronize()
        marks.append(time.time())
        return {}

    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.time()
    pipe.encode_prompt(PROMPT, True, negative_prompt=NEG, device="cuda")
    torch.cuda.synchronize()
    enc_alone = time.time() - start
    torch.cuda.reset_peak_memory_stats()
    start = time.time()
    frames = pipe(prompt=PROMPT, negative_prompt=NEG, height=480, width=832, frames=81, num_inference_steps=args.steps,
                  guidance_scale=6.0, output_type="np", callback_on_step_end=cb,
                  generator=torch.Generator("cuda").manual_seed(0)).frames[0]
    torch.cuda.synchronize()
    end = time.time()
    steps = [b - a for a, b in zip(marks, marks[1:])]
    mean_step = sum(steps) / len(steps)
    first = marks[0] - start  # prompt encoding + latents + the first step
    denoise = mean_step * args.steps
    decode = end - marks[-1]
    print("| stage | diffusers |\n|---|---|")
    print(f"| load (from disk to GPU) | {load:.1f} s |")
    print(f"| encode prompt (separate call, warm) | {enc_alone:.3f} s |")
    print(f"| denoise {args.steps} steps (mean step x steps) | {denoise:.2f} s ({mean_step:.3f} s/step) |")
    print(f"| start to end of first step | {first:.2f} s |")
    print(f"| VAE decode + post-processing (f32) | {decode:.2f} s |")
    print(f"| total __call__ | {end - start:.2f} s |")
    print(f"| peak GPU memory allocated / reserved | {torch.cuda.max_memory_allocated() / 2**30:.2f} / "
          f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB |")
    print(f"frames {frames.shape}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if not args.skip_build:
        build(args)
    if not args.skip_bench:
        bench(args)


if __name__ == "__main__":
    main()
