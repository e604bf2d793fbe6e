#!/usr/bin/env bash
# Run on the GPU machine (the device tool) from the repository root, carrying .devcarry/
# (the stripped, xz-compressed CUDA build of sana-video, which embeds the built-in model)
# and .whl/ (diffusers 0.42.1). Times the README's clip with the built-in model: ours on
# CUDA (bf16, its default, and f32), cold and warm, next to diffusers' SanaVideoPipeline.
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/builtin_gpu.txt
P="a large red circle moves slowly to the left on a dark blue background"
for dt in bf16 f32; do
  for run in 1 2 3; do
    echo "== ours, cuda $dt, run $run"
    $B/sana-video generate --backend cuda --dtype $dt --prompt "$P" -o $OUT/builtin_${dt}_$run.mp4 2>&1 | grep -E "^(time|memory|wrote)"
  done
done 2>&1 | tee $OUT/builtin_ours.txt
for dt in bf16 f32; do
  echo "== diffusers $dt"
  python3 tools/bench_builtin_diffusers.py --model builtin-model --dtype $dt --runs 3 2>&1 | grep -v -i warn
done 2>&1 | tee $OUT/builtin_diffusers.txt
rm -f $OUT/builtin_*_[23].mp4
