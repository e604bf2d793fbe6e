#!/usr/bin/env bash
# Second half of the GPU-machine run: CUDA parity again (after a fix), then wgpu on the
# NVIDIA Vulkan driver (carried loader .debs in .gl/, per the device README).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
source benches/device_unpack.sh
date -u
echo "== parity on CUDA"
SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/dit_parity --test-threads=1 --nocapture 2>&1 | grep -E 'rel L2|test result|panicked' | tee $OUT/parity_cuda.log
SANA_TEST_BACKENDS=cuda $B/kernels --test-threads=1 --nocapture 2>&1 | grep -E 'rel|test result|panicked' | tee $OUT/kernels_cuda.log
echo "== parity on wgpu (NVIDIA Vulkan)"
SANA_TEST_BACKENDS=wgpu SANA_FIXTURES=tests/fixtures $B/dit_parity --test-threads=1 --nocapture 2>&1 | grep -E 'rel L2|test result|panicked' | tee $OUT/parity_vulkan.log
SANA_TEST_BACKENDS=wgpu $B/kernels --test-threads=1 --nocapture 2>&1 | grep -E 'rel|test result|panicked' | tee $OUT/kernels_vulkan.log
echo "== full-size 480p"
python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn
python3 tools/fullsize_parity.py --model /tmp/ck480/transformer --out /tmp/fp 2>&1 | grep -v -i warn
for be in cuda wgpu; do
  $B/sana-video debug transformer --backend $be --model /tmp/ck480/transformer --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours_$be.safetensors
  python3 tools/compare.py /tmp/fp/ours_$be.safetensors /tmp/fp/outputs.safetensors | tee -a $OUT/fullsize_parity.txt
done
echo "== benchmarks, wgpu on Vulkan"
$B/dit-forward --model /tmp/ck480/transformer --backend wgpu --dtype f32 --latent 1x5x16x16 --latent 1x21x30x52 --iters 3 2>&1 | tee $OUT/bench_vulkan_f32.md
$B/dit-forward --model /tmp/ck480/transformer --backend wgpu --dtype f16 --latent 1x5x16x16 --latent 1x21x30x52 --iters 3 2>&1 | tee $OUT/bench_vulkan_f16.md
