#!/usr/bin/env bash
# Renders the motion dataset with every core into DATA (default /tmp/motion/all):
# nproc workers x CLIPS_PER_WORKER clips (FRAMES frames, default 17, 128x128), seeds SEED_BASE
# (default 1000) + worker; LONG=1 renders long-clip motion (motion_dataset.py --long).
set -euo pipefail
DATA=${DATA:-/tmp/motion/all}
N=${CLIPS_PER_WORKER:-300}
W=$(nproc)
tmp=$(mktemp -d)
mkdir -p "$DATA"
t0=$(date +%s)
for i in $(seq 0 $((W - 1))); do
  python3 tools/dataset/motion_dataset.py --out "$tmp/w$i" --clips "$N" --shard "$N" --frames "${FRAMES:-17}" ${LONG:+--long} --size 128 --seed $((${SEED_BASE:-1000} + i)) > /dev/null &
done
wait
for i in $(seq 0 $((W - 1))); do
  mv "$tmp/w$i/clips-00000.npz" "$DATA/clips-$(printf %05d "$i").npz"
  mv "$tmp/w$i/captions.jsonl" "$DATA/captions-$(printf %05d "$i").jsonl"
done
echo "dataset: $((W * N)) clips in $(( $(date +%s) - t0 )) s in $DATA"
