#!/usr/bin/env python3
"""Runs `sana-video generate` on the pipeline fixtures' cases (tests/fixtures/pipeline) with
their injected noise and compares with diffusers' frames and final latents: how the CUDA
path is checked on the GPU machine with the release binary alone.

    python3 tools/pipeline_case_check.py --bin target/release/sana-video --backend cuda [--case NAME ...]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--fixtures", default="tests/fixtures/pipeline")
    ap.add_argument("--case", action="append")
    a = ap.parse_args()
    cases = json.load(open(os.path.join(a.fixtures, "cases.json")))
    ok = True
    tmp = tempfile.mkdtemp()
    for c in cases:
        if a.case and c["name"] not in a.case:
            continue
        ref = load_file(os.path.join(a.fixtures, c["name"] + ".safetensors"))
        noise = os.path.join(tmp, "noise.safetensors")
        save_file({"latents": ref["init_latents"]}, noise)
        out = os.path.join(tmp, c["name"] + ".safetensors")
        cmd = [a.bin, "generate", "--model", os.path.join(a.fixtures, c["pipeline"]), "--backend", a.backend,
               "--dtype", "f32", "--prompt", c["prompt"], "--negative-prompt", c["negative_prompt"],
               "--height", str(c["height"]), "--width", str(c["width"]), "--frames", str(c["frames"]),
               "--steps", str(c["steps"]), "--cfg-scale", str(c["cfg"]), "--sampler", c["sampler"],
               "--resolution-binning", "on" if c["binning"] else "off", "--init-noise", noise, "--quiet", "-o", out]
        if c.get("motion") is not None:
            cmd += ["--motion-score", str(c["motion"])]
        if c["image"]:
            cmd += ["--image", os.path.join(a.fixtures, c["name"] + ".png")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{c['name']}: FAILED\n{r.stderr}")
            ok = False
            continue
        ours = load_file(out)
        d = ours["latents"].astype(np.float64) - ref["final_latents"]
        rel = math.sqrt((d ** 2).sum() / (ref["final_latents"].astype(np.float64) ** 2).sum())
        mse = ((ours["frames"].astype(np.float64) - ref["frames"]) ** 2).mean()
        psnr = float("inf") if mse == 0 else 10 * math.log10(1 / mse)
        good = rel <= 1e-4 and psnr >= 45
        ok &= good
        print(f"{c['name']} ({a.backend}): final latents rel L2 {rel:.2e}, frames PSNR {psnr:.1f} dB {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
