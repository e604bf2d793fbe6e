#!/usr/bin/env python3
"""Relative L2 and max abs error between tensors of two safetensors files.

    compare.py ACTUAL EXPECTED [NAME ...]      (default NAME: sample)

Integer tensors (masks) are compared for equality."""
import sys

from safetensors.torch import load_file

a_all, b_all = load_file(sys.argv[1]), load_file(sys.argv[2])
for name in sys.argv[3:] or ["sample"]:
    a, b = a_all[name], b_all[name]
    if not a.is_floating_point():
        same = a.shape == b.shape and bool((a.long() == b.long()).all())
        print(f"{name}: {'identical' if same else 'DIFFERENT'} ({sys.argv[1]})")
        continue
    a, b = a.double(), b.double()
    rel = ((a - b).norm() / b.norm()).item()
    print(f"{name}: rel L2 {rel:.3e}  max abs {(a - b).abs().max().item():.3e}  ({sys.argv[1]})")
