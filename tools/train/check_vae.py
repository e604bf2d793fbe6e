#!/usr/bin/env python3
"""How much of the motion clips a VAE keeps (issue 6): renders clips, encodes each whole
17-frame clip (posterior mean), decodes, and reports
* PSNR per frame index, averaged over the clips (a decoder trained on short windows loses
  quality after them), and
* per colour, how many objects the evaluator's colour rule (core/src/eval: within 64 of the
  named colour, nearer to it than to every other object colour and the named backgrounds, at
  least 15% of the nominal area in 3/4 of the frames) finds in the originals and in the
  reconstructions: the ceiling the VAE puts on the evaluator's colour accuracy.

    python3 tools/train/check_vae.py --vae builtin-model/vae --clips 30
"""
import argparse
import collections
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dataset"))
import motion_dataset as md  # noqa: E402

V = json.load(open(os.path.join(HERE, "..", "dataset", "vocabulary.json")))
COLOURS = {k: np.array(v, np.float32) for k, v in V["colours"].items()}
BACKGROUNDS = {k: np.array(v, np.float32) for k, v in V["backgrounds"].items()}


def found(clip, obj, background):
    """The evaluator's colour rule (core/src/eval::track and score_clip)."""
    d = np.linalg.norm(clip - COLOURS[obj["colour"]], axis=-1)
    mask = d < 64
    rivals = [c for k, c in COLOURS.items() if k != obj["colour"]] + [BACKGROUNDS[b] for b in background]
    for r in rivals:
        mask &= d < np.linalg.norm(clip - r, axis=-1)
    area = mask.reshape(clip.shape[0], -1).sum(1)
    radius = V["sizes"][obj["size"]] * clip.shape[2]
    return bool((area >= max(4, 0.15 * np.pi * radius * radius)).sum() * 4 >= clip.shape[0] * 3), area


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", required=True, help="a diffusers AutoencoderKLWan folder")
    ap.add_argument("--clips", type=int, default=30)
    ap.add_argument("--split", default="eval", choices=["train", "eval"])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--verbose", action="store_true", help="print every object the reconstruction loses")
    a = ap.parse_args()
    from diffusers import AutoencoderKLWan
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae = AutoencoderKLWan.from_pretrained(a.vae, torch_dtype=torch.float32).eval().to(device)
    rng = np.random.default_rng(a.seed)
    psnr = np.zeros(17)
    stats = collections.defaultdict(lambda: [0, 0, 0])
    for _ in range(a.clips):
        spec = md.clip_spec(rng, a.split)
        clip = md.render(spec, 17, 128)
        x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            rec = vae.decode(vae.encode(x.to(device)).latent_dist.mean).sample.clamp(-1, 1).cpu()
        psnr += 10 * np.log10(4 / ((rec - x) ** 2).mean(dim=(0, 1, 3, 4)).numpy())
        rec = ((rec[0].permute(1, 2, 3, 0) + 1) * 127.5).numpy()
        for o in spec["objects"]:
            s = stats[o["colour"]]
            s[0] += 1
            g, g_area = found(clip.astype(np.float32), o, spec["background"]["colours"])
            f, f_area = found(rec, o, spec["background"]["colours"])
            s[1] += g
            s[2] += f
            if a.verbose and g and not f:
                print(f"lost {o['size']} {o['colour']} {o['shape']} {o['motion']} {o['speed']} on "
                      f"{'/'.join(spec['background']['colours'])}: area every 4th frame {g_area[::4].tolist()} -> "
                      f"{f_area[::4].tolist()}")
    print("PSNR per frame (dB):", " ".join(f"{v / a.clips:.1f}" for v in psnr))
    total = np.sum(list(stats.values()), axis=0)
    print(f"objects found: originals {total[1]}/{total[0]}, reconstructions {total[2]}/{total[0]}")
    print("  " + "  ".join(f"{k} {v[2]}/{v[1]}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    main()
