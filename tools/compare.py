#!/usr/bin/env python3
"""Relative L2 and max abs error of `sample` in two safetensors files: compare.py ACTUAL EXPECTED"""
import sys

from safetensors.torch import load_file

a = load_file(sys.argv[1])["sample"].double()
b = load_file(sys.argv[2])["sample"].double()
rel = ((a - b).norm() / b.norm()).item()
print(f"rel L2 {rel:.3e}  max abs {(a - b).abs().max().item():.3e}  ({sys.argv[1]})")
