#!/usr/bin/env python3
"""The built-in model's block-causal variant (issue 8): the built-in DiT fine-tuned to run
chunk by chunk under the LongLive sampler (MODEL-SPEC §5.4), sharing the built-in model's
text encoder, tokenizer and VAE (so only transformer/ ships).

Chunks are 2 latent frames (8 video frames); a 17-frame clip (5 latent frames) is the
chunks [3, 2], which is also how a long video starts (the first chunk absorbs the remainder).
Each step trains two things:

* continuation: chunk 0 clean at timestep 0 (what the state pass sees), chunk 1 noised at one
  of LongLive's timesteps, block-causal attention (chunk 1 reads chunk 0, not the reverse)
  and no temporal look-ahead across the boundary; loss on chunk 1 only. The context pins
  down position and velocity, so the flow-matching target is nearly deterministic.
* the first chunk, alone: at t = 1000 LongLive's x0 prediction from pure noise would be the
  blurry mean of all videos the prompt allows, so that step learns the bidirectional
  teacher's own sample for the same noise (pairs made here with diffusers' SanaVideoPipeline
  on the built-in model, 20 steps, CFG 6): a deterministic map, hence a sharp first chunk.
  At the other three timesteps it learns plain flow matching on real clips.

Later chunks run with `--cached-blocks 1` (the engine's default for this model). With long
clips (>= 33 frames, `motion_dataset.py --long`) the continuation trains windows of four
chunks [3, 2, 2, 2] read exactly that way (each chunk sees itself and the one before), and
for `--self-rollout` of the rows the chunk before the trained one is the model's own 4-step
LongLive sample, as at inference.

    python3 tools/train/train_causal.py --data DATA --pipeline builtin-model --out RUN \
        --max-minutes 8 --compile
    python3 tools/train/train_causal.py --export-only --out RUN --pipeline builtin-model

Exports RUN/transformer (f16, `_class_name` SanaVideoCausalTransformer3DModel).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_dit import chi_default, load_clips, load_split, save_split, tokenize_like_diffusers  # noqa: E402

TIMESTEPS = [1000.0, 960.0, 889.0, 727.0]
CHUNK = 2


class Chunks:
    """Latent frames per chunk of the current forward and the attention window (None: every
    earlier chunk; K: the last K finished chunks, as `--cached-blocks K`); shared by every
    patched layer."""

    def __init__(self):
        self.sizes = [5]
        self.tokens_per_frame = 64
        self.window = None


class BlockCausalAttn:
    """ReLU linear attention where a token reads its own chunk and every earlier one
    (running sums per chunk), as diffusers' SanaLinearAttnProcessor3_0 computes it with one
    chunk; float32 like diffusers."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        dtype = hidden_states.dtype
        q = F.relu(attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))).float()
        k = F.relu(attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))).float()
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1)).float()
        cos, sin = rotary_emb

        def rot(x):
            x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
            c, s = cos[..., 0::2].float(), sin[..., 1::2].float()
            return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)

        qr, kr = rot(q), rot(k)
        outs, kvs, ksums, at = [], [], [], 0
        win = self.chunks.window
        for n in self.chunks.sizes:
            sl = slice(at, at + n * self.chunks.tokens_per_frame)
            at = sl.stop
            kvs.append(torch.einsum("bnhc,bnhd->bhcd", kr[:, sl], v[:, sl]))  # Σ R φk ⊗ v
            ksums.append(k[:, sl].sum(1))  # [B, H, C]
            keep = len(kvs) if win is None else win + 1  # this chunk and the window's finished ones
            kv, ksum = sum(kvs[-keep:]), sum(ksums[-keep:])
            num = torch.einsum("bnhc,bhcd->bnhd", qr[:, sl], kv)
            den = torch.einsum("bnhc,bhc->bnh", q[:, sl], ksum)
            outs.append(num / (den[..., None] + 1e-15))
        o = torch.cat(outs, 1).flatten(2).to(dtype)
        return attn.to_out[1](attn.to_out[0](o))


def causal_ff(ff, chunks):
    """GLUMBTempConv with the temporal conv's right tap dropped at chunk ends (a chunk's last
    frame cannot see the next chunk; its first frame still sees the previous chunk's last)."""

    def forward(hidden_states):
        residual = hidden_states
        b, f, h, w, c = hidden_states.shape
        x = hidden_states.reshape(b * f, h, w, c).permute(0, 3, 1, 2)
        x = ff.nonlinearity(ff.conv_inverted(x))
        x = ff.conv_depth(x)
        x, gate = torch.chunk(x, 2, dim=1)
        x = ff.conv_point(x * ff.nonlinearity(gate))
        s = x.reshape(b, f, c, h * w)
        wt = ff.conv_temp.weight[:, :, :, 0]  # [out, in, 3]: frames f-1, f, f+1
        prev = F.pad(s, (0, 0, 0, 0, 1, 0))[:, :f]
        nxt = F.pad(s, (0, 0, 0, 0, 0, 1))[:, 1:]
        ends = torch.tensor([i for n in chunks.sizes for i in [1.0] * (n - 1) + [0.0]], device=s.device, dtype=s.dtype)
        nxt = nxt * ends.view(1, f, 1, 1)
        y = s + sum(torch.einsum("oc,bfcn->bfon", wt[:, :, i], z) for i, z in enumerate([prev, s, nxt]))
        y = y.permute(0, 1, 3, 2).reshape(b, f, h, w, c)
        return y + residual if ff.residual_connection else y  # the block builds it without

    return forward


def make_causal(transformer, chunks):
    for blk in transformer.transformer_blocks:
        assert blk.ff.norm_type is None, "GLUMBTempConv with a norm is not what SanaVideo builds"
        blk.attn1.processor = BlockCausalAttn(chunks)
        blk.ff.forward = causal_ff(blk.ff, chunks)


@torch.no_grad()
def self_check(transformer, c, h, w, device):
    """The training rewrite against diffusers' own forward (one chunk) and against the dense
    block-masked reference the LongSANA fixtures use (chunks [3, 2])."""
    import copy
    # Full float32 for the check (TF32 matmuls and convolutions alone differ by ~1e-4).
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from make_longsana_fixtures import BlockCausal, BlockCausalLinearAttn, ff_forward
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(2, c, 5, h, w, generator=gen).to(device)
    y = torch.randn(2, 7, transformer.config.caption_channels, generator=gen).to(device)
    tpf = (h // 2) * (w // 2)
    t_tok = torch.cat([torch.zeros(2, 3 * tpf), torch.full((2, 2 * tpf), 700.0)], 1).to(device)
    ours = copy.deepcopy(transformer).eval()
    chunks = Chunks()
    chunks.tokens_per_frame = tpf
    make_causal(ours, chunks)
    plain = transformer.eval()(x, encoder_hidden_states=y, timestep=torch.full((2,), 500.0, device=device), return_dict=False)[0]
    chunks.sizes = [5]
    one = ours(x, encoder_hidden_states=y, timestep=torch.full((2,), 500.0, device=device), return_dict=False)[0]
    ref = copy.deepcopy(transformer).eval()
    bc = BlockCausal([0, 0, 0, 1, 1], tpf)
    bc.frame_chunk, bc.tok_chunk = bc.frame_chunk.to(device), bc.tok_chunk.to(device)
    for blk in ref.transformer_blocks:
        blk.attn1.processor = BlockCausalLinearAttn(bc)
        blk.ff.forward = ff_forward(blk.ff, bc)
    want = ref(x, encoder_hidden_states=y, timestep=t_tok, return_dict=False)[0]
    chunks.sizes = [3, 2]
    got = ours(x, encoder_hidden_states=y, timestep=t_tok, return_dict=False)[0]
    # The long-clip window: chunks [3, 2, 2, 2], each reading itself and the chunk before.
    x9 = torch.randn(2, c, 9, h, w, generator=gen).to(device)
    t9 = torch.cat([torch.zeros(2, 7 * tpf), torch.full((2, 2 * tpf), 889.0)], 1).to(device)
    ref9 = copy.deepcopy(transformer).eval()
    bc9 = BlockCausal([0, 0, 0, 1, 1, 2, 2, 3, 3], tpf, window=1)
    bc9.frame_chunk, bc9.tok_chunk = bc9.frame_chunk.to(device), bc9.tok_chunk.to(device)
    for blk in ref9.transformer_blocks:
        blk.attn1.processor = BlockCausalLinearAttn(bc9)
        blk.ff.forward = ff_forward(blk.ff, bc9)
    want9 = ref9(x9, encoder_hidden_states=y, timestep=t9, return_dict=False)[0]
    chunks.sizes, chunks.window = [3, 2, 2, 2], 1
    got9 = ours(x9, encoder_hidden_states=y, timestep=t9, return_dict=False)[0]
    chunks.window = None
    transformer.train()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    e1 = ((one - plain).norm() / plain.norm()).item()
    e2 = ((got - want).norm() / want.norm()).item()
    e3 = ((got9 - want9).norm() / want9.norm()).item()
    print(f"self-check: one chunk vs diffusers rel {e1:.1e}; [3, 2] vs the dense block-masked reference rel {e2:.1e}; "
          f"[3, 2, 2, 2] window 1 vs the reference rel {e3:.1e}")
    if e1 > 1e-5 or e2 > 1e-5 or e3 > 1e-5:
        raise SystemExit("the block-causal training forward disagrees with its references")


@torch.no_grad()
def teacher_pairs(pipeline_dir, captions, rows, shape, device, seed, batch=256, cfg=6.0, steps=20):
    """(noise, sample) pairs of the bidirectional built-in model, in its latent space."""
    from diffusers import SanaVideoPipeline
    pipe = SanaVideoPipeline.from_pretrained(pipeline_dir, torch_dtype=torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((len(rows),) + shape, device=device, generator=gen)
    out = []
    for i in range(0, len(rows), batch):
        prompts = [captions[r] for r in rows[i:i + batch]]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            lat = pipe(prompt=prompts, negative_prompt="", latents=noise[i:i + batch], num_inference_steps=steps,
                       guidance_scale=cfg, output_type="latent", height=shape[-2] * 8, width=shape[-1] * 8,
                       frames=(shape[1] - 1) * 4 + 1, use_resolution_binning=False, return_dict=False)[0]
        out.append(lat.float())
    del pipe
    return noise, torch.cat(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--pipeline", required=True, help="the built-in model's folder (teacher and initial weights)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=128, help="clips per step, for each of the two losses")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--teacher", type=int, default=4096, help="teacher (noise, sample) pairs for the first step")
    ap.add_argument("--self-rollout", type=float, default=0.5,
                    help="long clips: share of continuation rows whose context chunk is the model's own "
                         "4-step LongLive sample (what inference feeds it) instead of the real one")
    ap.add_argument("--general", type=float, default=0.2,
                    help="share of rows trained at a random timestep instead of LongLive's four")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--anneal", action="store_true", help="learning rate down to 10%% by the deadline")
    ap.add_argument("--init", help="a run folder (weights-*, state.json) to continue from")
    ap.add_argument("--init-transformer", help="a shipped transformer/ folder to continue from (e.g. builtin-model-long/transformer)")
    ap.add_argument("--init-step", type=int, default=0, help="its step count (with --init-transformer)")
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()
    from diffusers import AutoencoderKLWan, SanaVideoPipeline, SanaVideoTransformer3DModel
    from safetensors.torch import load_file
    from transformers import Gemma2Model, GemmaTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    transformer = SanaVideoTransformer3DModel.from_pretrained(os.path.join(a.pipeline, "transformer"),
                                                              torch_dtype=torch.float32).to(device)
    step = 0
    if a.init_transformer:
        transformer.load_state_dict({k: v.float() for k, v in load_file(
            os.path.join(a.init_transformer, "diffusion_pytorch_model.safetensors")).items()})
        step = a.init_step
    if a.init or a.export_only:
        src = a.out if a.export_only else a.init
        transformer.load_state_dict(load_split(os.path.join(src, "ema" if a.export_only else "weights")))
        step = json.load(open(os.path.join(src, "state.json")))["step"]
    if a.export_only:
        export(transformer, a.out, step)
        return

    self_check(transformer, transformer.config.in_channels, 16, 16, device)
    videos, captions = load_clips(a.data)
    tokenizer = GemmaTokenizer.from_pretrained(os.path.join(a.pipeline, "tokenizer"))
    text_encoder = Gemma2Model.from_pretrained(os.path.join(a.pipeline, "text_encoder"), torch_dtype=torch.float32)
    text_encoder = text_encoder.to(device).eval().requires_grad_(False)
    vae = AutoencoderKLWan.from_pretrained(os.path.join(a.pipeline, "vae"), torch_dtype=torch.float32)
    vae = vae.to(device).eval().requires_grad_(False)
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    t0 = time.time()
    with torch.no_grad():
        parts = []
        eb = max(16, 128 * 17 // videos.shape[1])  # clips per VAE batch, fewer for long clips
        for i in range(0, len(videos), eb):
            x = torch.from_numpy(videos[i:i + eb]).to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
            parts.append(((vae.encode(x).latent_dist.mean - mean) / std).half())
        latents = torch.cat(parts)
        # The frozen text encoder: every caption's embedding once (diffusers' encode_prompt layout).
        pipe = SanaVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                 scheduler=None)
        chi, window = chi_default(), 300
        ids, amask = tokenize_like_diffusers(pipe, captions + [""], chi, window)
        select = torch.tensor([0] + list(range(ids.shape[1] - window + 1, ids.shape[1])))
        embs, masks = [], []
        for i in range(0, len(ids), 256):
            hid = text_encoder(ids[i:i + 256].to(device), attention_mask=amask[i:i + 256].to(device))[0]
            embs.append(hid[:, select.to(device)].half())
            masks.append(amask[i:i + 256][:, select].to(device))
        emb_all, mask_all = torch.cat(embs), torch.cat(masks)
        ref, ref_mask = pipe.encode_prompt([captions[0]], do_classifier_free_guidance=False, device=device,
                                           complex_human_instruction=chi, max_sequence_length=window)[:2]
        if not torch.equal(mask_all[:1], ref_mask) or not torch.allclose(emb_all[:1].float(), ref, atol=2e-3, rtol=2e-3):
            raise SystemExit("cached prompt embeddings differ from SanaVideoPipeline.encode_prompt")
    n_clips = len(captions)
    print(f"latents {tuple(latents.shape)}, {n_clips} captions embedded in {time.time() - t0:.0f} s", flush=True)
    b_, c, f, h, w = latents.shape
    # 17-frame clips train the first boundary, chunks [3, 2], every earlier chunk in view.
    # Long clips (>= 33 frames) train windows [3, 2, 2, 2] read as `--cached-blocks 1` reads
    # them (each chunk sees itself and the one before, through the chain of earlier chunks),
    # at even latent offsets: offset 0 is a video's start, later ones its middle.
    if f == 5:
        sizes_c, offsets, window = [3, 2], [0], None
    elif f >= 9:
        sizes_c, offsets, window = [3, 2, 2, 2], list(range(0, f - 9 + 1, 2)), 1
    else:
        raise SystemExit(f"expected 17-frame clips (5 latent frames) or at least 33 frames (9), got {f} latent frames")
    nf = sum(sizes_c)
    ctx0, ctx1 = nf - sizes_c[-1] - sizes_c[-2], nf - sizes_c[-1]  # the chunk before the trained one
    print(f"continuation windows {sizes_c} at latent offsets {offsets}, window {window}", flush=True)
    gen = torch.Generator(device=device).manual_seed(a.seed + step)
    t0 = time.time()
    teach_rows = torch.randint(0, n_clips, (a.teacher,), generator=gen, device=device).tolist()
    t_noise, t_sample = teacher_pairs(a.pipeline, captions, teach_rows, (c, 5, h, w), device, a.seed + step)
    teach_rows = torch.tensor(teach_rows, device=device)
    print(f"{a.teacher} teacher pairs in {time.time() - t0:.0f} s", flush=True)
    del videos

    chunks = Chunks()
    chunks.tokens_per_frame = (h // 2) * (w // 2)
    make_causal(transformer, chunks)
    model = torch.compile(transformer, dynamic=False) if a.compile else transformer
    params = list(transformer.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99), fused=device == "cuda")
    ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    live = transformer.state_dict()
    keys = [k for k in ema if live[k].dtype.is_floating_point]
    ema_t, live_t = [ema[k] for k in keys], [live[k] for k in keys]
    first = step
    log = open(os.path.join(a.out, "loss.jsonl"), "a")
    lt = torch.tensor(TIMESTEPS, device=device) / 1000
    B = a.batch

    def draw_sigma(n, allow_one=True):
        pick = lt[torch.randint(0 if allow_one else 1, 4, (n,), device=device, generator=gen)]
        s = torch.sigmoid(torch.randn(n, device=device, generator=gen))
        general = 3 * s / (1 + 2 * s)
        return torch.where(torch.rand(n, device=device, generator=gen) < a.general, general, pick)

    @torch.no_grad()
    def rollout(x, emb, mask):
        """LongLive's four steps on the chunk at [ctx0, ctx1) after the real chunks before it
        (eager: other shapes than the compiled step's)."""
        chunks.sizes, chunks.window = sizes_c[:-1], window
        x = x[:, :, :ctx1].clone()
        cur = torch.randn(x[:, :, ctx0:].shape, device=device, generator=gen)
        for i, t in enumerate(TIMESTEPS):
            x[:, :, ctx0:] = cur
            t_tok = torch.zeros(x.shape[0], 1, ctx1, h // 2, w // 2, device=device)
            t_tok[:, :, ctx0:] = t
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                v = transformer(x, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=t_tok,
                                return_dict=False)[0].float()
            x0 = cur - t / 1000 * v[:, :, ctx0:]
            if i + 1 < len(TIMESTEPS):
                s = TIMESTEPS[i + 1] / 1000
                cur = (1 - s) * x0 + s * torch.randn(x0.shape, device=device, generator=gen)
        return x0

    def run(x, t_tok, emb, mask, sizes, win=None):
        nonlocal model
        chunks.sizes, chunks.window = sizes, win
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            try:
                return model(x, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=t_tok, return_dict=False)[0].float()
            except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the run
                if model is transformer:
                    raise
                print(f"torch.compile failed ({type(e).__name__}: {e}); training eagerly", flush=True)
                model = transformer
                return model(x, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=t_tok, return_dict=False)[0].float()

    t_train = time.time()
    while step < a.steps and (a.max_minutes is None or time.time() - t0 < 60 * a.max_minutes):
        lr = a.lr * min(1.0, (step - first + 1) / a.warmup)
        if a.anneal and a.max_minutes:
            lr *= 1 - 0.9 * min(1.0, (time.time() - t_train) / (60 * a.max_minutes - (t_train - t0)))
        for g in opt.param_groups:
            g["lr"] = lr
        tpf = (h // 2, w // 2)
        # Continuation: clean context chunks, the last one noisy, loss on it.
        idx = torch.randint(0, n_clips, (B,), device=device, generator=gen)
        drop = torch.rand(B, device=device, generator=gen) < 0.1
        rows = torch.where(drop, n_clips, idx)
        off = offsets[step % len(offsets)]
        x0 = latents[idx, :, off:off + nf].float()
        n_roll = int(B * a.self_rollout) if len(sizes_c) > 2 else 0
        if n_roll:
            # Exposure bias: at inference the context is generated. The target stays the real
            # continuation, so the model learns to carry its own samples back to the data.
            x0[:n_roll, :, ctx0:ctx1] = rollout(x0[:n_roll], emb_all[idx[:n_roll]].float(), mask_all[idx[:n_roll]])
        sig = draw_sigma(B).view(-1, 1, 1, 1, 1)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        late = torch.arange(nf, device=device).view(1, 1, -1, 1, 1) >= ctx1
        xt = torch.where(late, (1 - sig) * x0 + sig * noise, x0)
        t_tok = torch.where(late, sig * 1000, 0.0).expand(B, 1, nf, *tpf)
        pred = run(xt, t_tok, emb_all[rows].float(), mask_all[rows], sizes_c, window)
        loss_c = ((pred - (noise - x0)) ** 2)[:, :, ctx1:].mean()
        # The first chunk alone: teacher pairs at t = 1000, real clips elsewhere.
        j = torch.randint(0, a.teacher, (B,), device=device, generator=gen)
        idx = torch.randint(0, n_clips, (B,), device=device, generator=gen)
        use_teacher = torch.rand(B, device=device, generator=gen) < 0.5
        rows = torch.where(use_teacher, teach_rows[j], idx)
        x0 = torch.where(use_teacher.view(-1, 1, 1, 1, 1), t_sample[j][:, :, :3], latents[idx, :, :3].float())
        noise = torch.where(use_teacher.view(-1, 1, 1, 1, 1), t_noise[j][:, :, :3],
                            torch.randn(x0.shape, device=device, generator=gen))
        sig = torch.where(use_teacher, 1.0, draw_sigma(B, allow_one=False)).view(-1, 1, 1, 1, 1)
        xt = (1 - sig) * x0 + sig * noise
        drop = (torch.rand(B, device=device, generator=gen) < 0.1) & ~use_teacher
        rows = torch.where(drop, n_clips, rows)
        pred = run(xt, (sig * 1000).view(-1).expand(B), emb_all[rows].float(), mask_all[rows], [3])
        loss_f = ((pred - (noise - x0)) ** 2).mean()
        loss = loss_c + loss_f
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            n = step - first
            torch._foreach_lerp_(ema_t, live_t, 1 - min(a.ema, (1 + n) / (10 + n)))
        if step % a.log_every == 0:
            line = dict(step=step, loss_continue=round(loss_c.item(), 5), loss_first=round(loss_f.item(), 5),
                        lr=lr, seconds=round(time.time() - t0, 1))
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(line, flush=True)
    save_split({k: v.float() for k, v in transformer.state_dict().items()}, os.path.join(a.out, "weights"))
    save_split({k: v.float() for k, v in ema.items()}, os.path.join(a.out, "ema"))
    with open(os.path.join(a.out, "state.json"), "w") as fh:
        json.dump({"step": step}, fh)
    transformer.load_state_dict(ema)
    export(transformer, a.out, step)


def export(transformer, out, step):
    d = os.path.join(out, "transformer")
    transformer.to(torch.float16).save_pretrained(d, safe_serialization=True)
    cfg_path = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["_class_name"] = "SanaVideoCausalTransformer3DModel"
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh, indent=2, sort_keys=True)
        fh.write("\n")
    print(f"exported {d} (float16, block-causal) at step {step}", flush=True)


if __name__ == "__main__":
    main()
