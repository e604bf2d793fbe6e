#!/usr/bin/env python3
"""Stage 1 of the built-in model (issue 6): a small Wan2.1-architecture VAE
(`diffusers.AutoencoderKLWan`, 8x spatial, 4x temporal, z_dim 16 as released) trained on the
synthetic motion clips (tools/dataset/motion_dataset.py).

Loss: L1 + MSE reconstruction of the posterior sample plus a small KL term; AdamW, bf16
autocast on CUDA; seeded; resumable (OUT/ckpt.pt holds model, optimiser and step, written
atomically every --save-every steps); one JSON line per --log-every steps in OUT/loss.jsonl.
At the end (or with --export-only) writes OUT/vae/ with `save_pretrained` (f32) and the
latent statistics (per-channel mean/std of posterior means over the data) in its config,
which the DiT stage normalises with.

    python3 tools/train/train_vae.py --data /tmp/motion --out /tmp/vae-run --steps 6000 --batch 16
    python3 tools/train/train_vae.py --data /tmp/motion --out /tmp/vae-run --steps 12000   # resumes at 6000

Pinned stack: tools/requirements-fixtures.txt.
"""
import argparse
import glob
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

CONFIG = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
              attn_scales=[], dropout=0.0)


class Clips:
    """All shards in memory as uint8 [N, T, H, W, 3] (20k clips of 17x128x128 = 16 GB; use fewer for less)."""

    def __init__(self, data_dir, limit=None):
        shards = sorted(glob.glob(os.path.join(data_dir, "clips-*.npz")))
        if not shards:
            raise SystemExit(f"{data_dir}: no clips-*.npz shards (tools/dataset/motion_dataset.py makes them)")
        vids, bgs, n = [], [], 0
        for s in shards:
            f = np.load(s)
            vids.append(f["videos"])
            bgs.append(f["backgrounds"] if "backgrounds" in f.files else None)
            n += len(vids[-1])
            if limit and n >= limit:
                break
        self.videos = np.concatenate(vids)[:limit]
        # Per-clip background images (newer shards): where a frame differs from them is an object.
        self.backgrounds = None if any(b is None for b in bgs) else np.concatenate(bgs)[:limit]

    def batch(self, rng, size, device, frames=0, with_background=False):
        idx = rng.integers(0, len(self.videos), size)
        v = self.videos[idx]
        if frames and frames < v.shape[1]:
            # A window of 1 + 4k frames starting on a multiple of 4, so every part of the clip is seen.
            start = 4 * int(rng.integers(0, (v.shape[1] - frames) // 4 + 1))
            v = v[:, start:start + frames]
        x = torch.from_numpy(np.ascontiguousarray(v)).to(device)  # [B, T, H, W, 3] uint8
        x = x.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        if not with_background:
            return x
        bg = torch.from_numpy(self.backgrounds[idx]).to(device)  # [B, H, W, 3]
        return x, bg.permute(0, 3, 1, 2)[:, :, None].float() / 127.5 - 1.0


def save_atomic(obj, path):
    tmp = path + ".partial"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export(model, clips, out, device, n=256, keep_stats=False):
    model.eval()
    if keep_stats:  # the encoder is frozen: its latent statistics have not changed
        model.float().save_pretrained(os.path.join(out, "vae"))
        print(f"exported {out}/vae (latent statistics kept)")
        return
    rng = np.random.default_rng(0)
    means = []
    with torch.no_grad():
        for _ in range(max(1, n // 16)):
            x = clips.batch(rng, 16, device)
            means.append(model.encode(x).latent_dist.mean.float().transpose(0, 1).reshape(model.config.z_dim, -1))
    m = torch.cat(means, 1)
    model.register_to_config(latents_mean=m.mean(1).tolist(), latents_std=m.std(1).tolist())
    model.float().save_pretrained(os.path.join(out, "vae"))
    print(f"exported {out}/vae (latents_mean {[round(v, 3) for v in m.mean(1).tolist()[:4]]}..)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=0, help="train on the first N frames (1 + 4k; 0: all)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--limit", type=int, default=None, help="use at most this many clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init", help="start from the weights of this vae/ folder (fresh optimiser)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="freeze the encoder (so latents a DiT is training on stay valid); train the decoder")
    ap.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps after (re)start")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (checkpoint and export) after this long")
    ap.add_argument("--object-weight", type=float, default=0.0,
                    help="extra loss weight on object pixels (those differing from the clip's background by more "
                         "than 8/255 in some channel): objects cover a few percent of a frame, so plain L1/MSE "
                         "barely sees what the evaluator scores. Needs shards with backgrounds.")
    a = ap.parse_args()
    from diffusers import AutoencoderKLWan

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    clips = Clips(a.data, a.limit)
    if a.object_weight and clips.backgrounds is None:
        raise SystemExit(f"--object-weight needs shards with backgrounds; {a.data} has none (re-render them)")
    torch.backends.cudnn.benchmark = True
    if a.init:
        model = AutoencoderKLWan.from_pretrained(a.init, torch_dtype=torch.float32).to(device)
        print(f"initialised from {a.init}")
    else:
        model = AutoencoderKLWan(**CONFIG).to(device)
    if a.decoder_only:
        model.encoder.requires_grad_(False)
        model.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99))
    step = 0
    ckpt = os.path.join(a.out, "ckpt.pt")
    if os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed at step {step}")
    if a.export_only:
        export(model, clips, a.out, device, keep_stats=a.decoder_only)
        return
    n_params = sum(p.numel() for p in model.parameters())
    print(f"AutoencoderKLWan {CONFIG}: {n_params / 1e6:.2f} M parameters, {len(clips.videos)} clips, {device}")
    rng = np.random.default_rng(a.seed + step)
    log = open(os.path.join(a.out, "loss.jsonl"), "a")
    model.train()
    t0 = time.time()
    first = step
    while step < a.steps and (a.max_minutes is None or time.time() - t0 < 60 * a.max_minutes):
        if a.object_weight:
            x, bg = clips.batch(rng, a.batch, device, a.frames, with_background=True)
            obj = ((x - bg).abs().amax(dim=1, keepdim=True) > 16 / 255).float()
            w = 1 + a.object_weight * obj
        else:
            x = clips.batch(rng, a.batch, device, a.frames)
            w, obj = None, None
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step - first + 1) / a.warmup)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            with torch.set_grad_enabled(not a.decoder_only):
                post = model.encode(x).latent_dist
            z = post.sample()
            rec = model.decode(z).sample
        rec = rec.float()
        l1 = F.l1_loss(rec, x)
        l2 = F.mse_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        if w is None:
            loss = l1 + l2 + a.kl * kl
        else:  # weighted mean, normalised so the loss scale does not depend on how much object a batch has
            d = rec - x
            loss = ((w * (d.abs() + d * d)).sum() / (w.sum() * x.shape[1])) + a.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % a.log_every == 0 or step == a.steps:
            psnr = 10 * torch.log10(4.0 / l2.detach()).item()
            rec_line = dict(step=step, loss=loss.item(), l1=l1.item(), mse=l2.item(), kl=kl.item(), psnr=psnr,
                            seconds=round(time.time() - t0, 1))
            if obj is not None:  # reconstruction error on the object pixels alone
                n_obj = obj.sum().clamp(min=1) * x.shape[1]
                rec_line["obj_l1"] = ((rec - x).abs() * obj).sum().item() / n_obj.item()
            log.write(json.dumps(rec_line) + "\n")
            log.flush()
            print(rec_line, flush=True)
        if step % a.save_every == 0 or step == a.steps:
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    export(model, clips, a.out, device, keep_stats=a.decoder_only)


if __name__ == "__main__":
    main()
