#!/usr/bin/env python3
"""Reference fixtures for LongSANA (issue 8, MODEL-SPEC §5): a small random block-causal
checkpoint and two PyTorch references written from the spec, independent of our chunked
runner's running-sum formulation:

* `forward`: ONE pass over the whole latent video with a block-causal mask. Linear attention
  is computed densely, token by token (o_n = Σ_{m: chunk(m) ≤ chunk(n)} v_m ⟨R_n φq_n, R_m φk_m⟩
  / Σ_m ⟨φq_n, φk_m⟩, m restricted the same way), and the temporal conv drops the right
  neighbour across chunk boundaries (the first frame of a chunk keeps its left neighbour,
  the previous chunk's last frame). Earlier chunks are clean with timestep 0, the last chunk
  noisy: our chunked inference (t = 0 passes that commit the state, then the noisy chunk)
  must reproduce every output. Also with a window of one finished chunk (`--cached-blocks 1`).
* `loop`: the LongLive sampler (§5.4) driven by that one-pass model, re-running all clean
  chunks at t = 0 for each step (no state at all), with every noise draw injected from the
  fixture file.

Everything in float64 from the stored float32 weights (diffusers' own modules, its attention
processor and temporal conv replaced by the block-causal versions below).

Pinned: torch 2.11.0, diffusers 0.42.1 (tools/requirements-fixtures.txt).

    python3 tools/make_longsana_fixtures.py --out tests/fixtures/longsana

Layout:
    model/model_index.json
    model/transformer/{config.json (_class_name SanaVideoCausalTransformer3DModel),
                       diffusion_pytorch_model.safetensors}
    forward.safetensors   hidden_states [B,C,T,H,W] (chunks clean..clean, noisy),
                          encoder_hidden_states, encoder_attention_mask, timestep [B] (the
                          noisy chunk's), sample (all chunks), sample_window1
    loop.safetensors      encoder_hidden_states, encoder_attention_mask, noise_{j}_{k}
                          (chunk j, draw k: 0 initial, 1..3 re-noising), latents (result)
    cases.json            chunk sizes and settings
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from diffusers import SanaVideoTransformer3DModel
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_dit_fixtures import randomize  # noqa: E402

TIMESTEPS = [1000.0, 960.0, 889.0, 727.0]
CONFIG = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
              num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32,
              caption_channels=24, mlp_ratio=2.5, patch_size=(1, 2, 2), qk_norm="rms_norm_across_heads")
CHUNK = 2          # latent frames per chunk (LongSANA: 10)
FRAMES = 7         # -> chunks [3, 2, 2]: the first absorbs the remainder
HEIGHT, WIDTH = 4, 6


def chunk_sizes(t, chunk):
    n, r = divmod(t, chunk)
    return [r] if n == 0 else [chunk + r] + [chunk] * (n - 1)


class BlockCausal:
    """Which chunk each latent frame belongs to, and the attention window (None: all)."""

    def __init__(self, frame_chunk, tokens_per_frame, window=None):
        self.frame_chunk = torch.tensor(frame_chunk)
        self.tok_chunk = self.frame_chunk.repeat_interleave(tokens_per_frame)
        self.window = window

    def mask(self):
        c = self.tok_chunk
        m = c[None, :] <= c[:, None]  # [n, m]: key chunk no later than the query's
        if self.window is not None:
            m &= c[None, :] >= c[:, None] - self.window
        return m.double()


class BlockCausalLinearAttn:
    """diffusers calls processors as objects and passes on only the keyword arguments their
    __call__ names (rotary_emb), so this is a class, not a closure."""

    def __init__(self, bc):
        self.bc = bc

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        bc = self.bc
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1)).double()
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1)).double()
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1)).double()
        q, k = F.relu(q), F.relu(k)
        cos, sin = rotary_emb  # [1, N, 1, C] interleaved, as diffusers builds them

        def rot(x):
            x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
            c, s = cos[..., 0::2].double(), sin[..., 1::2].double()
            return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)

        qr, kr = rot(q), rot(k)
        m = bc.mask()
        num = torch.einsum("bnhc,bmhc->bhnm", qr, kr) * m
        den = (torch.einsum("bnhc,bmhc->bhnm", q, k) * m).sum(-1)  # [B, H, N]
        o = torch.einsum("bhnm,bmhc->bnhc", num, v) / (den.permute(0, 2, 1)[..., None] + 1e-15)
        o = o.flatten(2).to(hidden_states.dtype)
        return attn.to_out[1](attn.to_out[0](o))


def ff_forward(ff, bc):
    def forward(hidden_states):  # GLUMBTempConv without residual, as the block builds it
        b, f, h, w, c = hidden_states.shape
        x = hidden_states.reshape(b * f, h, w, c).permute(0, 3, 1, 2)
        x = ff.nonlinearity(ff.conv_inverted(x))
        x = ff.conv_depth(x)
        x, gate = torch.chunk(x, 2, dim=1)
        x = ff.conv_point(x * ff.nonlinearity(gate))
        s = x.reshape(b, f, c, h * w)  # same memory order as diffusers' view
        wt = ff.conv_temp.weight[:, :, :, 0]  # [out, in, 3]: taps for frames f-1, f, f+1
        out = []
        for i in range(f):
            acc = s[:, i] + torch.einsum("oc,bcn->bon", wt[:, :, 1], s[:, i])
            if i > 0:  # left neighbour, also across a chunk boundary (the cached frame)
                acc = acc + torch.einsum("oc,bcn->bon", wt[:, :, 0], s[:, i - 1])
            if i + 1 < f and bc.frame_chunk[i + 1] == bc.frame_chunk[i]:  # no look-ahead across chunks
                acc = acc + torch.einsum("oc,bcn->bon", wt[:, :, 2], s[:, i + 1])
            out.append(acc)
        y = torch.stack(out, 1)  # [B, F, C, HW]
        return y.permute(0, 1, 3, 2).reshape(b, f, h, w, c)
    return forward


def block_causal_model(model_dir, frame_chunk, tokens_per_frame, window=None):
    model = SanaVideoTransformer3DModel.from_pretrained(model_dir, torch_dtype=torch.float64).eval()
    bc = BlockCausal(frame_chunk, tokens_per_frame, window)
    for blk in model.transformer_blocks:
        blk.attn1.processor = BlockCausalLinearAttn(bc)
        blk.ff.forward = ff_forward(blk.ff, bc)
    return model, bc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/longsana")
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(21)
    model_dir = os.path.join(a.out, "model", "transformer")
    model = SanaVideoTransformer3DModel(**CONFIG)
    randomize(model, gen)
    model.save_pretrained(model_dir, safe_serialization=True)

    sizes = chunk_sizes(FRAMES, CHUNK)
    frame_chunk = [j for j, n in enumerate(sizes) for _ in range(n)]
    pt, ph, pw = CONFIG["patch_size"]
    tpf = (HEIGHT // ph) * (WIDTH // pw)
    c = CONFIG["in_channels"]

    # The block-causal rewrite is exact: with one chunk it is diffusers' own forward.
    xs = torch.randn(1, c, FRAMES, HEIGHT, WIDTH, generator=gen, dtype=torch.float64)
    ys = torch.randn(1, 3, CONFIG["caption_channels"], generator=gen, dtype=torch.float64)
    plain = SanaVideoTransformer3DModel.from_pretrained(model_dir, torch_dtype=torch.float64).eval()
    one, _ = block_causal_model(model_dir, [0] * FRAMES, tpf)
    with torch.no_grad():
        ref = plain(hidden_states=xs, encoder_hidden_states=ys, timestep=torch.tensor([500.0]), return_dict=False)[0]
        got = one(hidden_states=xs, encoder_hidden_states=ys, timestep=torch.tensor([500.0]), return_dict=False)[0]
    err = ((got - ref).norm() / ref.norm()).item()
    assert err < 1e-6, f"block-causal reference with one chunk differs from diffusers: {err:.3e}"
    print(f"self-check: one chunk equals diffusers' forward (rel {err:.1e})")

    # (a) one block-masked pass: clean chunks at t = 0, the last chunk noisy at t.
    b, text_len = 2, 5
    x = torch.randn(b, c, FRAMES, HEIGHT, WIDTH, generator=gen)
    y = torch.randn(b, text_len, CONFIG["caption_channels"], generator=gen)
    mask = torch.ones(b, text_len)
    mask[1, 3:] = 0.0
    t_noisy = torch.tensor([700.0, 250.0])
    n_last = sizes[-1] * tpf
    t_tok = torch.zeros(b, FRAMES * tpf)
    t_tok[:, -n_last:] = t_noisy[:, None]
    out = {}
    for name, window in [("sample", None), ("sample_window1", 1)]:
        m, _ = block_causal_model(model_dir, frame_chunk, tpf, window)
        with torch.no_grad():
            out[name] = m(hidden_states=x.double(), encoder_hidden_states=y.double(), timestep=t_tok.double(),
                          encoder_attention_mask=mask.double(), return_dict=False)[0].float()
    save_file({"hidden_states": x, "encoder_hidden_states": y, "encoder_attention_mask": mask, "timestep": t_noisy,
               **{k: v.contiguous() for k, v in out.items()}}, os.path.join(a.out, "forward.safetensors"))
    print(f"forward: chunks {sizes}, |sample| {out['sample'].abs().mean():.4f}, "
          f"window differs by {(out['sample'] - out['sample_window1']).abs().max():.3e}")

    # (b) the LongLive loop, no state: every step re-runs the clean chunks at t = 0.
    y1 = torch.randn(1, text_len, CONFIG["caption_channels"], generator=gen)
    mask1 = torch.ones(1, text_len)
    mask1[0, 4:] = 0.0
    noise = {}
    clean = []
    for j, n in enumerate(sizes):
        draws = [torch.randn(1, c, n, HEIGHT, WIDTH, generator=gen) for _ in TIMESTEPS]
        for k, d in enumerate(draws):
            noise[f"noise_{j}_{k}"] = d
        fc = [i for i, m in enumerate(sizes[: j + 1]) for _ in range(m)]
        m, _ = block_causal_model(model_dir, fc, tpf)
        xk = draws[0].double()
        for k, t in enumerate(TIMESTEPS):
            inp = torch.cat(clean + [xk], 2)
            ts = torch.zeros(1, inp.shape[2] * tpf, dtype=torch.float64)
            ts[:, -n * tpf:] = t
            with torch.no_grad():
                v = m(hidden_states=inp, encoder_hidden_states=y1.double(), timestep=ts,
                      encoder_attention_mask=mask1.double(), return_dict=False)[0][:, :, -n:]
            x0 = xk - (t / 1000.0) * v
            if k + 1 < len(TIMESTEPS):
                s = TIMESTEPS[k + 1] / 1000.0
                xk = (1 - s) * x0 + s * draws[k + 1].double()
            else:
                clean.append(x0)
    latents = torch.cat(clean, 2).float()
    save_file({"encoder_hidden_states": y1, "encoder_attention_mask": mask1, "latents": latents.contiguous(),
               **{k: v.contiguous() for k, v in noise.items()}}, os.path.join(a.out, "loop.safetensors"))
    print(f"loop: latents {tuple(latents.shape)}, |latents| {latents.abs().mean():.4f}")

    # The checkpoint is LongSANA's class; the weights layout is the bidirectional model's.
    cfg_path = os.path.join(model_dir, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["_class_name"] = "SanaVideoCausalTransformer3DModel"
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    with open(os.path.join(a.out, "model", "model_index.json"), "w") as f:
        json.dump({"_class_name": "SanaVideoPipeline", "_diffusers_version": "0.42.1",
                   "transformer": ["diffusers", "SanaVideoCausalTransformer3DModel"]}, f, indent=2)
    json.dump({"chunk_frames": CHUNK, "frames": FRAMES, "chunks": sizes, "timesteps": TIMESTEPS,
               "forward_batch": b, "noisy_timestep": t_noisy.tolist()},
              open(os.path.join(a.out, "cases.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
