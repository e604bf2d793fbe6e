#!/usr/bin/env bash
# Issue 9: where the 480p DiT forward's time goes on the GPU machine. Run there (device
# tool), from the repository root, with .devcarry/ (xz CUDA builds of dit-forward, of
# dit-forward-old for the previous kernels if carried, and of the kernels, dit_parity and
# longsana test binaries) and .whl/ (diffusers 0.42.1) carried. Logs go to $OUT.
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
date -u | tee -a $OUT/gpu.txt
python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn

echo "== parity on CUDA (kernel tests and DiT / LongSANA fixtures, f32, tolerance 1e-5)"
for t in kernels dit_parity longsana; do
  [ -x $B/$t ] && SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'rel|test result|panicked|FAILED' | tee $OUT/parity_$t.log
done

L="--latent 1x21x60x104 --latent 2x21x60x104"
echo "== ours, CUDA bf16, profiled"
$B/dit-forward --model /tmp/ck480/transformer --backend cuda --dtype bf16 $L --profile 2>&1 | tee $OUT/ours_bf16.md
if [ -x $B/dit-forward-old ]; then
  echo "== previous kernels (dit-forward-old), CUDA bf16"
  $B/dit-forward-old --model /tmp/ck480/transformer --backend cuda --dtype bf16 $L 2>&1 | tee $OUT/old_bf16.md
fi
echo "== reference (diffusers), same card"
python3 tools/bench_reference.py --model /tmp/ck480/transformer --dtype bfloat16 --latent 1x16x21x60x104 --latent 2x16x21x60x104 --profile 2>&1 | grep -v -i warn | tee $OUT/ref_bf16.md
