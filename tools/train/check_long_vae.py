#!/usr/bin/env python3
"""Round trip of long clips through VAEs (issue 8): the background's median colour and the
object's pixel count every 8 frames, and the PSNR per window of 16 frames, for each VAE
folder given. A VAE fit for long videos keeps both flat over the whole clip.

    python3 tools/train/check_long_vae.py builtin-model/vae builtin-model-long/vae
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dataset"))
import motion_dataset as md  # noqa: E402

CLIPS = [
    ("red circle right, dark blue", {"objects": [{"colour": "red", "shape": "circle", "motion": "right", "size": "large",
                                                  "speed": "slowly", "start": [0.5, 0.5], "phase": 0.0}],
                                     "background": {"kind": "plain", "colours": ["dark blue"]}}),
    ("yellow star circling, grey to dark green", {"objects": [{"colour": "yellow", "shape": "star", "motion": "circle",
                                                               "size": "medium", "speed": "quickly", "start": [0.5, 0.5],
                                                               "phase": 1.0}],
                                                  "background": {"kind": "vertical", "colours": ["grey", "dark green"]}}),
]


def main():
    from diffusers import AutoencoderKLWan
    device = "cuda" if torch.cuda.is_available() else "cpu"
    frames = 81
    for name, spec in CLIPS:
        v = md.render(spec, frames, 128, long=True)
        x = torch.from_numpy(v).permute(3, 0, 1, 2)[None].float().to(device) / 127.5 - 1
        print(f"{name}: input background {np.median(v[0].reshape(-1, 3), 0).astype(int).tolist()}")
        for folder in sys.argv[1:]:
            vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=torch.float32).to(device).eval()
            with torch.no_grad():
                y = vae.decode(vae.encode(x).latent_dist.mean, return_dict=False)[0].clamp(-1, 1)
            f = ((y[0].permute(1, 2, 3, 0) + 1) * 127.5).cpu().numpy()
            bgs = [np.median(f[t].reshape(-1, 3), 0).astype(int).tolist() for t in range(0, frames, 16)]
            mse = [((y[:, :, t:t + 16] - x[:, :, t:t + 16]) ** 2).mean().item() for t in range(0, frames - 1, 16)]
            psnr = [round(float(10 * np.log10(4 / m)), 1) for m in mse]
            print(f"  {folder}: background every 16 frames {bgs}; PSNR per 16 frames {psnr}")


if __name__ == "__main__":
    main()
