#!/usr/bin/env python3
"""Stage 2 of the built-in model (issue 6): a small SanaVideoTransformer3DModel and a small
Gemma-2 text encoder trained together on the motion clips, over a trained VAE (stage 1,
tools/train/train_vae.py), into a genuine diffusers SanaVideoPipeline folder.

* Tokenizer: a Gemma-style BPE (byte fallback, Gemma's id layout) trained on the captions,
  the complex human instruction and the negative prompts, saved as GemmaTokenizer.
* Prompts are tokenised once at start-up exactly as diffusers' own
  `SanaVideoPipeline.encode_prompt` does it (CHI, lower-casing, the 300-position window; a
  start-up check compares with encode_prompt), and encoded with gradients every step, so
  training sees exactly what inference feeds.
* Flow matching (MODEL-SPEC §8.2): x_σ = (1-σ)x₀ + σε, target ε - x₀, σ from a logit-normal
  draw shifted by --train-shift, timestep 1000σ; captions dropped to "" with --drop-prob
  (classifier-free guidance); with --i2v-prob the first latent frame is kept clean with
  timestep 0 on its tokens and left out of the loss (image-to-video, as the I2V pipeline
  samples).
* Latents: VAE posterior means normalised with the VAE's latents_mean/std, cached once.
* Seeded, resumable (OUT/ckpt.pt), time-limited (--max-minutes), loss log OUT/loss.jsonl;
  exports OUT/pipeline (save_pretrained, --export-dtype) with a DPM-Solver++ flow scheduler.

    python3 tools/train/train_dit.py --data /tmp/motion/all --vae /tmp/vae-run/vae --out /tmp/dit-run --max-minutes 8
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

# The Gemma-style BPE (byte fallback, Gemma's id layout) the prompt fixtures use.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from make_text_encoder_fixtures import train_tokenizer  # noqa: E402

NEGATIVE = ["", "blurry, distorted, static"]


def save_split(state, prefix, limit=15_000_000):
    """f32 state dict as prefix-NN.safetensors files of at most `limit` bytes each (the device
    tool returns files of at most 16 MiB), written atomically."""
    from safetensors.torch import save_file
    d = os.path.dirname(prefix)
    for old in glob.glob(prefix + "-*.safetensors"):
        os.remove(old)
    part, size, n = {}, 0, 0
    items = list(state.items())
    for i, (k, v) in enumerate(items):
        part[k] = v.detach().float().cpu().contiguous()
        size += part[k].numel() * 4
        nxt = items[i + 1][1].numel() * 4 if i + 1 < len(items) else 0
        if i + 1 == len(items) or size + nxt > limit:
            tmp = os.path.join(d, f".partial-{n}")
            save_file(part, tmp)
            os.replace(tmp, f"{prefix}-{n:02d}.safetensors")
            part, size, n = {}, 0, n + 1


def load_split(prefix):
    from safetensors.torch import load_file
    files = sorted(glob.glob(prefix + "-*.safetensors"))
    if not files:
        raise SystemExit(f"{prefix}-*.safetensors: no weight files")
    state = {}
    for f in files:
        state.update(load_file(f))
    return state


def tokenize_like_diffusers(pipe, prompts, chi, max_sequence_length):
    """Token ids and mask for each prompt exactly as SanaVideoPipeline._get_gemma_prompt_embeds
    makes them (checked against encode_prompt at start-up)."""
    tok = pipe.tokenizer
    tok.padding_side = "right"
    chi_prompt = "\n".join(chi)
    length = len(tok.encode(chi_prompt)) + max_sequence_length - 2
    texts = [chi_prompt + p for p in pipe._text_preprocessing(prompts)]
    ids, masks = [], []
    for i in range(0, len(texts), 4096):
        t = tok(texts[i:i + 4096], padding="max_length", max_length=length, truncation=True,
                add_special_tokens=True, return_tensors="pt")
        ids.append(t.input_ids)
        masks.append(t.attention_mask)
    return torch.cat(ids), torch.cat(masks)


def write_profile(prof, a, t_prof, device):
    if device == "cuda":
        torch.cuda.synchronize()
    per_step = (time.time() - t_prof) / a.profile
    prof.__exit__(None, None, None)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=40)
    with open(os.path.join(a.out, "profile.txt"), "w") as f:
        f.write(f"{a.profile} steps, batch {a.batch}: {per_step:.4f} s/step\n{table}\n")
    print(f"profile: {per_step:.4f} s/step; table in {a.out}/profile.txt", flush=True)


def chi_default():
    import inspect
    from diffusers import SanaVideoPipeline
    return inspect.signature(SanaVideoPipeline.__call__).parameters["complex_human_instruction"].default


def load_clips(data_dir):
    shards = sorted(glob.glob(os.path.join(data_dir, "clips-*.npz")))
    if not shards:
        raise SystemExit(f"{data_dir}: no clips-*.npz shards")
    videos = np.concatenate([np.load(s)["videos"] for s in shards])
    caps = []
    for cap_file in sorted(glob.glob(os.path.join(data_dir, "captions*.jsonl"))):
        caps += [json.loads(l)["caption"] for l in open(cap_file)]
    if len(caps) != len(videos):
        raise SystemExit(f"{data_dir}: {len(videos)} clips but {len(caps)} captions")
    return videos, caps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--train-shift", type=float, default=3.0)
    ap.add_argument("--drop-prob", type=float, default=0.1)
    ap.add_argument("--i2v-prob", type=float, default=0.25)
    ap.add_argument("--vocab", type=int, default=1200)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--te-hidden", type=int, default=128)
    ap.add_argument("--te-layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--export-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--warmup", type=int, default=300, help="linear learning-rate warm-up steps after (re)start")
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the exported weights")
    ap.add_argument("--init", help="a run folder whose weights-*/ema-* files and tokenizer/ to start from")
    ap.add_argument("--init-pipeline",
                    help="start from a SanaVideoPipeline folder (transformer/, text_encoder/, tokenizer/; e.g. "
                         "builtin-model): no extra files to carry to the device; fresh optimiser and EMA")
    ap.add_argument("--init-step", type=int, default=0, help="step count to continue from with --init-pipeline")
    ap.add_argument("--export-only", action="store_true",
                    help="write OUT/pipeline from OUT's ema-* files, tokenizer/ and --vae; no data needed")
    ap.add_argument("--sample-size", type=int, default=16, help="latent width (--export-only)")
    ap.add_argument("--profile", type=int, default=0,
                    help="profile this many steps (after 5 warm-up steps) with torch.profiler and write the top "
                         "operations by GPU time to OUT/profile.txt; training goes on")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    ap.add_argument("--boost", default="",
                    help="oversample clips whose caption names these words, e.g. 'pink,purple:3' (3x as often): "
                         "the colours the evaluator misses most")
    ap.add_argument("--anneal", action="store_true",
                    help="decay the learning rate linearly to 10%% over --max-minutes (a run's last call)")
    a = ap.parse_args()
    from diffusers import (AutoencoderKLWan, DPMSolverMultistepScheduler, SanaVideoPipeline,
                           SanaVideoTransformer3DModel)
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True  # the GLU's depthwise and temporal convolutions
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    chi = chi_default()
    if a.init and a.init_pipeline:
        raise SystemExit("--init and --init-pipeline exclude each other")
    init_dir = a.init or a.init_pipeline
    if init_dir and os.path.abspath(init_dir) != os.path.abspath(a.out):
        import shutil
        shutil.copytree(os.path.join(init_dir, "tokenizer"), os.path.join(a.out, "tokenizer"), dirs_exist_ok=True)
    videos, captions = (None, None) if a.export_only else load_clips(a.data)

    tok_dir = os.path.join(a.out, "tokenizer")
    if not os.path.exists(tok_dir):
        vocab, merges = train_tokenizer(captions + chi + NEGATIVE, a.vocab)
        GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False).save_pretrained(tok_dir)
    tokenizer = GemmaTokenizer.from_pretrained(tok_dir)

    vae = AutoencoderKLWan.from_pretrained(a.vae, torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    cache = os.path.join(a.out, "latents.pt")
    if a.export_only:
        latents = torch.zeros(1, 1, 1, a.sample_size, a.sample_size)
    elif os.path.exists(cache):
        latents = torch.load(cache)
    else:
        parts = []
        with torch.no_grad():
            for i in range(0, len(videos), 128):
                x = torch.from_numpy(videos[i:i + 128]).to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
                parts.append(((vae.encode(x).latent_dist.mean - mean) / std).half().cpu())
        latents = torch.cat(parts)
        torch.save(latents, cache)
    print(f"latents {tuple(latents.shape)}, mean {latents.float().mean():.3f}, std {latents.float().std():.3f}")

    te_cfg = Gemma2Config(vocab_size=len(tokenizer), hidden_size=a.te_hidden, intermediate_size=2 * a.te_hidden,
                          num_hidden_layers=a.te_layers, num_attention_heads=2, num_key_value_heads=1,
                          head_dim=a.te_hidden // 2, query_pre_attn_scalar=a.te_hidden // 2, sliding_window=4096,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2)
    text_encoder = Gemma2Model(te_cfg).to(device)
    heads = a.dim // 32
    transformer = SanaVideoTransformer3DModel(
        in_channels=vae.config.z_dim, out_channels=vae.config.z_dim, num_attention_heads=heads, attention_head_dim=32,
        num_layers=a.layers, num_cross_attention_heads=heads, cross_attention_head_dim=32, cross_attention_dim=a.dim,
        caption_channels=a.te_hidden, mlp_ratio=2.5, patch_size=(1, 2, 2), sample_size=latents.shape[-1],
        qk_norm="rms_norm_across_heads", rope_max_seq_len=1024).to(device)
    pipe = SanaVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=DPMSolverMultistepScheduler(
                                 num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                                 flow_shift=a.train_shift, solver_order=2, algorithm_type="dpmsolver++",
                                 solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero"))
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99), fused=device == "cuda")
    step = 0
    ckpt = os.path.join(a.out, "ckpt.pt")

    def named():
        return {**{"transformer." + k: v for k, v in transformer.state_dict().items()},
                **{"text_encoder." + k: v for k, v in text_encoder.state_dict().items()}}

    def load_named(state):
        transformer.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("transformer.")})
        text_encoder.load_state_dict({k[13:]: v for k, v in state.items() if k.startswith("text_encoder.")})

    if a.export_only:
        load_named(load_split(os.path.join(a.out, "ema")))
        step = json.load(open(os.path.join(a.out, "state.json")))["step"]
    elif a.init and not os.path.exists(ckpt):
        load_named(load_split(os.path.join(a.init, "weights")))
        step = json.load(open(os.path.join(a.init, "state.json")))["step"]
        print(f"initialised from {a.init} at step {step} (fresh optimiser)")
    elif a.init_pipeline and not os.path.exists(ckpt):
        from safetensors.torch import load_file
        transformer.load_state_dict({k: v.float() for k, v in load_file(
            os.path.join(a.init_pipeline, "transformer", "diffusion_pytorch_model.safetensors")).items()})
        text_encoder.load_state_dict({k: v.float() for k, v in load_file(
            os.path.join(a.init_pipeline, "text_encoder", "model.safetensors")).items()})
        step = a.init_step
        print(f"initialised from the pipeline {a.init_pipeline} at step {step} (fresh optimiser and EMA)")
    if os.path.exists(ckpt) and not a.export_only:
        st = torch.load(ckpt, map_location=device)
        transformer.load_state_dict(st["transformer"])
        text_encoder.load_state_dict(st["text_encoder"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        print(f"resumed at step {step}")
    n_dit = sum(p.numel() for p in transformer.parameters())
    n_te = sum(p.numel() for p in text_encoder.parameters())
    print(f"DiT {n_dit / 1e6:.2f} M, text encoder {n_te / 1e6:.2f} M parameters; {device}")
    ema = {k: v.detach().clone().float() for k, v in named().items()}
    fresh_ema = True  # averaging starts short (decay (1+n)/(10+n)) unless a run's average continues
    if a.init and not a.export_only and os.path.exists(os.path.join(a.init, "ema-00.safetensors")):
        ema = {k: v.to(device).float() for k, v in load_split(os.path.join(a.init, "ema")).items()}
        fresh_ema = False
    if a.export_only:
        a.steps = step  # no training: straight to the export below

    gen = torch.Generator(device=device).manual_seed(a.seed + step)
    log = open(os.path.join(a.out, "loss.jsonl"), "a")
    t0 = time.time()
    transformer.train()
    text_encoder.train()

    def save():
        tmp = ckpt + ".partial"
        torch.save({"transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
                    "opt": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, ckpt)
        # Weights without the optimiser, in files the device tool can return: resume with --init.
        save_split(named(), os.path.join(a.out, "weights"))
        save_split(ema, os.path.join(a.out, "ema"))
        with open(os.path.join(a.out, "state.json"), "w") as f:
            json.dump({"step": step}, f)

    first = step
    live = named()  # views of the parameters: the EMA update reads them in place
    ema_keys = list(live)
    ema_t = [ema[k] for k in ema_keys]
    live_t = [live[k] for k in ema_keys]

    if not a.export_only:
        # Tokenise every caption once, exactly as diffusers' encode_prompt does (CHI prefix,
        # lower-casing, right padding to the CHI length + 298, then [0] + the last 299 positions
        # after the encoder): the Python tokenizer cost more than half of each step.
        window = 300  # max_sequence_length, as the pipelines use it
        ids, amask = tokenize_like_diffusers(pipe, captions + [""], chi, window)
        ids, amask = ids.to(device), amask.to(device)
        empty = len(captions)
        select = torch.tensor([0] + list(range(ids.shape[1] - window + 1, ids.shape[1])), device=device)

        def encode(rows):
            hidden = text_encoder(ids[rows], attention_mask=amask[rows])[0]
            return hidden[:, select], amask[rows][:, select]

        with torch.no_grad():  # the shortcut must give what encode_prompt gives
            probe = [0, 1, empty]
            ref, ref_mask = pipe.encode_prompt([captions[0], captions[1], ""], do_classifier_free_guidance=False,
                                               device=device, complex_human_instruction=chi, max_sequence_length=window)[:2]
            got, got_mask = encode(torch.tensor(probe, device=device))
            if not (torch.equal(got_mask, ref_mask) and torch.allclose(got, ref, atol=1e-5, rtol=1e-4)):
                raise SystemExit("pre-tokenised prompts differ from SanaVideoPipeline.encode_prompt")
        latents = latents.to(device)
        model = torch.compile(transformer) if a.compile else transformer

    boost_w = None
    if a.boost and not a.export_only:
        words, _, factor = a.boost.partition(":")
        words = [w.strip() for w in words.split(",") if w.strip()]
        factor = float(factor or 2.0)
        hit = [any(f" {w} " in f" {c.lower()} " for w in words) for c in captions]
        boost_w = torch.tensor([factor if h else 1.0 for h in hit], device=device)
        print(f"boost {words} x{factor}: {sum(hit)} of {len(captions)} clips", flush=True)
    prof = None
    t_train = time.time()
    while step < a.steps and (a.max_minutes is None or time.time() - t0 < 60 * a.max_minutes):
        if a.profile and step == first + 5:
            torch.cuda.synchronize() if device == "cuda" else None
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else [])
            prof = torch.profiler.profile(activities=acts)
            prof.__enter__()
            t_prof = time.time()
        if prof is not None and step == first + 5 + a.profile:
            write_profile(prof, a, t_prof, device)
            prof = None
        lr = a.lr * min(1.0, (step - first + 1) / a.warmup)
        if a.anneal and a.max_minutes:  # linear cool-down to 10% over this run's time budget
            lr *= 1 - 0.9 * min(1.0, (time.time() - t_train) / (60 * a.max_minutes - (t_train - t0)))
        for g in opt.param_groups:
            g["lr"] = lr
        # All draws on the device and no boolean indexing: nothing in the step waits for the GPU.
        if boost_w is None:
            idx = torch.randint(0, len(captions), (a.batch,), device=device, generator=gen)
        else:
            idx = torch.multinomial(boost_w, a.batch, replacement=True, generator=gen)
        x0 = latents[idx].float()
        drop = torch.rand(a.batch, device=device, generator=gen) < a.drop_prob
        s = torch.sigmoid(torch.randn(a.batch, device=device, generator=gen))
        sigma = a.train_shift * s / (1 + (a.train_shift - 1) * s)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        sv = sigma.view(-1, 1, 1, 1, 1)
        target = noise - x0
        b, c, f, h, w = x0.shape
        i2v = torch.rand(a.batch, device=device, generator=gen) < a.i2v_prob
        clean = i2v.view(-1, 1, 1, 1, 1) & (torch.arange(f, device=device).view(1, 1, -1, 1, 1) == 0)
        xt = torch.where(clean, x0, (1 - sv) * x0 + sv * noise)
        # Image-to-video rows: timestep 0 on the clean first frame's tokens, no loss there.
        timestep = torch.where(clean, 0.0, (sigma * 1000).view(-1, 1, 1, 1, 1)).expand(b, 1, f, h // 2, w // 2)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            emb, mask = encode(torch.where(drop, empty, idx))
            try:
                pred = model(xt, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=timestep,
                             return_dict=False)[0]
            except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the run
                if model is transformer:
                    raise
                print(f"torch.compile failed ({type(e).__name__}: {e}); training eagerly", flush=True)
                model = transformer
                pred = model(xt, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=timestep,
                             return_dict=False)[0]
        weight = (~clean).float()
        loss = ((pred.float() - target) ** 2 * weight).sum() / (weight.sum() * c * h * w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            n = step - first
            decay = min(a.ema, (1 + n) / (10 + n)) if fresh_ema else a.ema
            torch._foreach_lerp_(ema_t, live_t, 1 - decay)
        if step % a.log_every == 0:
            line = dict(step=step, loss=loss.item(), lr=lr, seconds=round(time.time() - t0, 1))
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(line, flush=True)
        if step % a.save_every == 0:
            save()
    if prof is not None:
        write_profile(prof, a, t_prof, device)
    if not a.export_only:
        save()
    load_named(ema)  # export the averaged weights
    dtype = getattr(torch, a.export_dtype)
    pipe.scheduler.register_to_config(flow_shift=a.train_shift)
    transformer.eval()
    text_encoder.eval()
    export = SanaVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder.to(dtype), vae=vae.to(dtype),
                               transformer=transformer.to(dtype), scheduler=pipe.scheduler)
    export.save_pretrained(os.path.join(a.out, "pipeline"))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(a.out, "pipeline")) for f in fs)
    print(f"exported {a.out}/pipeline ({total / 1e6:.1f} MB, {a.export_dtype}) at step {step}")


if __name__ == "__main__":
    main()
