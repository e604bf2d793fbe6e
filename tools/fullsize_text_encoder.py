#!/usr/bin/env python3
"""A random full-size Gemma-2-2B text encoder in a pipeline folder, and the reference.

Builds `Gemma2Model` with Gemma-2-2B's config (26 layers, hidden 2304; transformers'
own random init, bf16, saved with `save_pretrained` like the hub checkpoint) next to the
real Gemma-2 tokenizer (scripts/fetch-gemma-tokenizer.sh), then runs diffusers'
`SanaVideoPipeline.encode_prompt` on it:

* with the pipeline's default complex human instruction (what `__call__` passes;
  `encode_prompt`'s own default is none);
* in float64 (eager attention, so the soft-cap applies): the parity reference;
* in bfloat16 and float32 (eager), timed on the GPU, with peak memory.

    python3 tools/fullsize_text_encoder.py --tokenizer DIR --out /tmp/gemma2b [--device cuda]

Writes OUT/pipeline/{model_index.json,tokenizer/,text_encoder/}, OUT/reference.safetensors
and prints a Markdown timing table. Pinned stack: tools/requirements-fixtures.txt.
"""
import argparse
import json
import os
import shutil
import time

import torch
from safetensors.torch import save_file
from transformers import Gemma2Config, Gemma2Model

PROMPT = "A small red ball bounces across a wooden floor, casting a soft shadow."
MOTION = 30
NEGATIVE = (
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
    "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
    "jitter, and ghosting effects, creating a disorienting visual experience.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    from diffusers import SanaVideoPipeline

    import diffusers
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, diffusers {diffusers.__version__}")
    pipe_dir = os.path.join(args.out, "pipeline")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(pipe_dir)
    shutil.copytree(args.tokenizer, os.path.join(pipe_dir, "tokenizer"))
    torch.manual_seed(0)
    config = Gemma2Config()  # transformers' defaults are Gemma-2-2B's
    with torch.device(args.device):
        model = Gemma2Model(config).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    print(f"Gemma2Model: {n} parameters ({n / 1e9:.3f} B)")
    model.save_pretrained(os.path.join(pipe_dir, "text_encoder"), max_shard_size="5GB")
    del model
    json.dump({"_class_name": "SanaVideoPipeline", "_diffusers_version": "0.42.1", "scheduler": [None, None],
               "text_encoder": ["transformers", "Gemma2Model"], "tokenizer": ["transformers", "GemmaTokenizer"],
               "transformer": [None, None], "vae": [None, None]},
              open(os.path.join(pipe_dir, "model_index.json"), "w"), indent=2)

    prompt = PROMPT + f" motion score: {MOTION}."
    # encode_prompt's own default is no instruction; SanaVideoPipeline.__call__ passes its
    # default complex human instruction, which is what a user of the pipeline gets.
    import inspect
    chi = inspect.signature(SanaVideoPipeline.__call__).parameters["complex_human_instruction"].default
    assert chi and chi[-1] == "User Prompt: "
    rows = []
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        pipe = SanaVideoPipeline.from_pretrained(pipe_dir, transformer=None, vae=None, scheduler=None, torch_dtype=dtype)
        try:
            pipe.text_encoder.set_attn_implementation("eager")
        except AttributeError:  # older transformers
            pipe.text_encoder.config._attn_implementation = "eager"
        pipe.to(args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            out = pipe.encode_prompt(prompt, True, negative_prompt=NEGATIVE, device=args.device,
                                     complex_human_instruction=chi)
            torch.cuda.synchronize()
            times = []
            for _ in range(args.iters):
                t = time.perf_counter()
                o = pipe.encode_prompt(prompt, True, negative_prompt=NEGATIVE, device=args.device,
                                       complex_human_instruction=chi)
                _ = [x.cpu() for x in o]
                times.append(time.perf_counter() - t)
        times.sort()
        peak = torch.cuda.max_memory_allocated()
        rows.append((str(dtype).replace("torch.", ""), times[len(times) // 2], times[0], base, peak))
        if dtype == torch.float64:
            pe, pm, ne, nm = out
            save_file({"prompt_embeds": pe.float().cpu().contiguous(), "prompt_attention_mask": pm.cpu().contiguous(),
                       "negative_prompt_embeds": ne.float().cpu().contiguous(),
                       "negative_prompt_attention_mask": nm.cpu().contiguous()},
                      os.path.join(args.out, "reference.safetensors"))
        del pipe, out
        torch.cuda.empty_cache()
    print(f"| diffusers encode_prompt ({torch.cuda.get_device_name()}) | median s | min s | weights GB | peak GB |")
    print("|---|---|---|---|---|")
    for name, med, mn, base, peak in rows:
        print(f"| {name} eager | {med:.4f} | {mn:.4f} | {base / 1e9:.2f} | {peak / 1e9:.2f} |")


if __name__ == "__main__":
    main()
