#!/usr/bin/env python3
"""The PyTorch reference loop for LongSANA's speed and memory (issue 8): diffusers'
SanaVideoTransformer3DModel (eager, bf16 by default) run chunk by chunk with a
constant-size state, written from MODEL-SPEC §5 (diffusers 0.42.1 has no causal model):

* per layer, S = Σ v ⊗ R·relu(k) and z = Σ relu(k) over all finished chunks (running sums,
  f32 like diffusers' own linear attention), added to the current chunk's own sums;
* the temporal conv reads the previous chunk's last frame and never looks ahead across the
  chunk's end;
* RoPE at absolute frame positions;
* LongLive: 4 steps at [1000, 960, 889, 727] with x0 prediction and fresh noise, CFG 1,
  then one forward of the clean chunk at t = 0 that commits the state (§5.4).

Random text embeddings (300 tokens) stand in for Gemma-2; no VAE (DiT frames per second;
our CLI reports DiT and decode separately). Times every chunk with CUDA syncs and reports
peak allocated / reserved memory for each video length.

    python3 tools/bench_longsana_reference.py --model /tmp/ck480/transformer --seconds 10 60
    python3 tools/bench_longsana_reference.py --check tests/fixtures/longsana   # CPU, float32

Pinned stack: tools/requirements-fixtures.txt (torch 2.11, diffusers 0.42.1).
"""
import argparse
import time
import types

import torch
import torch.nn.functional as F
from diffusers import SanaVideoTransformer3DModel

TIMESTEPS = [1000.0, 960.0, 889.0, 727.0]


def chunk_sizes(t, chunk):
    n, r = divmod(t, chunk)
    return [r] if n == 0 else [chunk + r] + [chunk] * (n - 1)


class LayerState:
    def __init__(self):
        self.S = None      # [B, H, C, C] f32: Σ v ⊗ R·relu(k)
        self.z = None      # [B, H, C, 1] f32: Σ relu(k)
        self.frame = None  # [B, C, 1, HW]: the temporal conv's input at the last finished frame
        self.commit = False


def rotate(x, cos, sin):
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out.type_as(x)


class StatefulLinearAttn:
    """diffusers' SanaLinearAttnProcessor3_0 plus the running sums of earlier chunks."""

    def __init__(self, st):
        self.st = st

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        st = self.st
        dt = hidden_states.dtype
        q = F.relu(attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1)))
        k = F.relu(attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1)))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        qr, kr = rotate(q, *rotary_emb), rotate(k, *rotary_emb)
        q, k = q.permute(0, 2, 3, 1), k.permute(0, 2, 3, 1)                      # B,H,C,N
        qr, kr, v = (t.permute(0, 2, 3, 1).float() for t in (qr, kr, v))
        S = torch.matmul(v, kr.transpose(-1, -2))                                # B,H,C,C
        z = k.float().sum(dim=-1, keepdim=True)                                  # B,H,C,1
        if st.S is not None:
            S, z = S + st.S, z + st.z
        if st.commit:
            st.S, st.z = S, z
        den = 1 / (z.transpose(-2, -1) @ q.float() + 1e-15)
        o = torch.matmul(S, qr) * den
        o = o.flatten(1, 2).transpose(1, 2).to(dt)
        return attn.to_out[1](attn.to_out[0](o))


def stateful_ff(ff, st):
    def forward(hidden_states):  # GLUMBTempConv (no residual), temporal conv with the cached frame
        b, f, h, w, c = hidden_states.shape
        x = hidden_states.view(b * f, h, w, c).permute(0, 3, 1, 2)
        x = ff.nonlinearity(ff.conv_inverted(x))
        x = ff.conv_depth(x)
        x, gate = torch.chunk(x, 2, dim=1)
        x = ff.conv_point(x * ff.nonlinearity(gate))
        s = x.view(b, f, c, h * w).permute(0, 2, 1, 3)                           # B,C,F,HW
        if st.frame is not None:
            y = s + ff.conv_temp(torch.cat([st.frame, s], 2))[:, :, 1:]
        else:
            y = s + ff.conv_temp(s)
        if st.commit:
            st.frame = s[:, :, -1:].clone()
        return y.permute(0, 2, 3, 1).reshape(b, f, h, w, c)
    return forward


def make_stateful(model, tpf):
    """Swaps in the stateful attention, FFN and RoPE; returns the per-layer states and the
    chunk's first latent frame (set it before each chunk)."""
    states = [LayerState() for _ in model.transformer_blocks]
    for blk, st in zip(model.transformer_blocks, states):
        blk.attn1.processor = StatefulLinearAttn(st)
        blk.ff.forward = stateful_ff(blk.ff, st)
    rope = model.rope.forward
    pos = {"start": 0}

    def rope_at(hidden_states):  # absolute frame positions: the chunk's frames after `start`
        b, ch, f, hh, ww = hidden_states.shape
        cos, sin = rope(types.SimpleNamespace(shape=(b, ch, pos["start"] + f, hh, ww)))
        return cos[:, -f * tpf:], sin[:, -f * tpf:]

    model.rope.forward = rope_at
    return states, pos


def check(fixtures):
    """This loop's chunked state against the block-masked one-pass reference
    (tests/fixtures/longsana, float64): every chunk's output, float32 on the CPU."""
    import json
    import os
    from safetensors.torch import load_file
    cases = json.load(open(os.path.join(fixtures, "cases.json")))
    fw = load_file(os.path.join(fixtures, "forward.safetensors"))
    model = SanaVideoTransformer3DModel.from_pretrained(os.path.join(fixtures, "model", "transformer"),
                                                        torch_dtype=torch.float32).eval()
    x, ref = fw["hidden_states"], fw["sample"]
    _, ph, pw = model.config.patch_size
    tpf = (x.shape[3] // ph) * (x.shape[4] // pw)
    states, pos = make_stateful(model, tpf)
    start, worst = 0, 0.0
    with torch.no_grad():
        for j, n in enumerate(cases["chunks"]):
            last = j + 1 == len(cases["chunks"])
            pos["start"] = start
            for st in states:
                st.commit = not last
            t = fw["timestep"] if last else torch.zeros(x.shape[0])
            out = model(hidden_states=x[:, :, start:start + n], encoder_hidden_states=fw["encoder_hidden_states"],
                        encoder_attention_mask=fw["encoder_attention_mask"], timestep=t, return_dict=False)[0]
            want = ref[:, :, start:start + n]
            err = ((out - want).norm() / want.norm()).item()
            worst = max(worst, err)
            print(f"chunk {j} ({n} latent frames, {'noisy' if last else 'clean, commits'}): rel L2 {err:.2e}")
            start += n
    assert worst < 1e-5, f"stateful reference differs from the block-masked one: {worst:.2e}"
    print("check passed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a SanaVideoTransformer3DModel folder (tools/make_fullsize_checkpoint.py)")
    ap.add_argument("--check", metavar="FIXTURES", help="only check the stateful loop against tests/fixtures/longsana")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0])
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--chunk-frames", type=int, default=10)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if a.check:
        return check(a.check)
    if not a.model:
        ap.error("--model is required (or --check FIXTURES)")
    dtype = getattr(torch, a.dtype)
    dev = a.device
    cuda = dev.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False
    model = SanaVideoTransformer3DModel.from_pretrained(a.model, torch_dtype=dtype).to(dev).eval()
    cfg = model.config
    pt, ph, pw = cfg.patch_size
    lat_h, lat_w, c = a.height // 8, a.width // 8, cfg.in_channels
    tpf = (lat_h // ph) * (lat_w // pw)
    states, pos = make_stateful(model, tpf)
    gen = torch.Generator(dev).manual_seed(0)
    text = torch.randn(1, 300, cfg.caption_channels, generator=gen, device=dev).to(dtype)
    mask = torch.ones(1, 300, device=dev)
    print(f"| video | latent frames | chunks | DiT seconds | DiT frames/s (video frames) | mean s/chunk (after the first) | peak allocated | peak reserved |")
    print("|---|---|---|---|---|---|---|---|")
    for seconds in a.seconds:
        frames = int(round(seconds * a.fps)) + 1
        lat_t = (frames - 1) // 4 + 1
        sizes = chunk_sizes(lat_t, a.chunk_frames)
        for st in states:
            st.S = st.z = st.frame = None
            st.commit = False
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times, start = [], 0
        with torch.no_grad():
            for j, n in enumerate(sizes):
                sync()
                t0 = time.perf_counter()
                pos["start"] = start
                x = torch.randn(1, c, n, lat_h, lat_w, generator=gen, device=dev, dtype=torch.float32)
                for k, t in enumerate(TIMESTEPS):
                    v = model(hidden_states=x.to(dtype), encoder_hidden_states=text, encoder_attention_mask=mask,
                              timestep=torch.tensor([t], device=dev), return_dict=False)[0].float()
                    x0 = x - (t / 1000.0) * v
                    if k + 1 < len(TIMESTEPS):
                        s = TIMESTEPS[k + 1] / 1000.0
                        x = (1 - s) * x0 + s * torch.randn(x.shape, generator=gen, device=dev)
                for st in states:
                    st.commit = True
                model(hidden_states=x0.to(dtype), encoder_hidden_states=text, encoder_attention_mask=mask,
                      timestep=torch.tensor([0.0], device=dev), return_dict=False)
                for st in states:
                    st.commit = False
                sync()
                times.append(time.perf_counter() - t0)
                start += n
        total = sum(times)
        alloc = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else float("nan")
        later = times[1:] or times
        print(f"| {seconds:g} s ({frames} frames) | {lat_t} | {len(sizes)} | {total:.2f} | {frames / total:.1f} | "
              f"{sum(later) / len(later):.3f} | {alloc:.2f} GiB | {reserved:.2f} GiB |", flush=True)


if __name__ == "__main__":
    main()
