#!/usr/bin/env bash
# Where the GPU waits (GPU machine, device tool): the 480p DiT forward one at a time and
# chained, profiled in timeline mode (CUDA events against the host clock, no syncs), with
# nvidia-smi's clocks and power alongside. Carry .devcarry/dit-forward.xz (stripped CUDA
# build) and .whl/ (diffusers 0.42.1, for the random checkpoint).
set -uo pipefail
source benches/device_unpack.sh
[ -f /tmp/ck/config.json ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck --device cuda 2>&1 | grep -v -i warn
nvidia-smi dmon -s pc -d 1 -o T > $OUT/dmon.txt 2>&1 &
DMON=$!
SANA_PROFILE_MODE=timeline timeout 200 $B/dit-forward --model /tmp/ck --backend cuda --dtype bf16 \
  --latent 2x21x60x104 --iters 3 --chain ${CHAIN:-4} --mask-pad 250 --profile ${EXTRA:-} 2>&1 | tee $OUT/timeline.md
kill $DMON
