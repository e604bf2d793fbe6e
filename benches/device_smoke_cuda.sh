#!/usr/bin/env bash
# A short CUDA check on the GPU machine (device tool): the same videos on the CPU backend and
# on CUDA must agree. Covers the FP8 dequantisation kernel (the built-in model quantised to
# FP8, weights resident) and the cached RoPE tables across LongSANA chunks (builtin-long).
# Carry .devcarry/sana-video.xz (a --features cuda release build).
set -euo pipefail
source benches/device_unpack.sh
P="a large red circle moves slowly to the right on a dark blue background"
$B/sana-video quantize --format fp8 --model builtin --output /tmp/b8 > /dev/null
for be in cpu cuda; do
  /usr/bin/time -f "$be fp8 %e s" $B/sana-video generate --backend $be --model /tmp/b8 --prompt "$P" --quiet -o /tmp/fp8-$be.safetensors
  /usr/bin/time -f "$be long %e s" $B/sana-video generate --backend $be --model builtin-long --frames 41 --prompt "$P" --quiet -o /tmp/long-$be.safetensors
done
python3 - <<'PY'
import json, struct, numpy as np
def frames(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])["frames"]
    s, e = h["data_offsets"]; return np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(h["shape"])
for k in ["fp8", "long"]:
    a, c = frames(f"/tmp/{k}-cpu.safetensors"), frames(f"/tmp/{k}-cuda.safetensors")
    d = np.abs(a - c)
    print(f"{k}: frames {a.shape}, CUDA vs CPU max abs {d.max():.2e}, mean abs {d.mean():.2e}, "
          f"PSNR {10 * np.log10(1 / max(np.mean((a - c) ** 2), 1e-20)):.1f} dB")
PY
