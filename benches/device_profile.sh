#!/usr/bin/env bash
# Issue 9: where the 480p DiT forward's time goes on the GPU machine. Run there (device
# tool), from the repository root, with .devcarry/ (xz CUDA builds of dit-forward, of
# dit-forward-old for the previous kernels if carried, of matmul-bench, and of the kernels,
# dit_parity and longsana test binaries) and .whl/ (diffusers 0.42.1) carried. Logs go to
# $OUT. Optional: PARITY (test binaries to run), LATENTS / REF_LATENTS (sizes).
set -uo pipefail
source benches/device_unpack.sh
DEFAULT_ROUTINE=${DEFAULT_ROUTINE:-tma-specialized-mma}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
date -u | tee -a $OUT/gpu.txt
python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn

echo "== parity on CUDA (kernel tests and DiT / LongSANA fixtures, f32, tolerance 1e-5)"
for t in ${PARITY:-kernels dit_parity longsana}; do
  [ -x $B/$t ] && SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'rel|test result|panicked|FAILED' | tee $OUT/parity_$t.log
done

L="${LATENTS:---latent 1x21x60x104 --latent 2x21x60x104}"
BEST=$DEFAULT_ROUTINE
if [ -x $B/matmul-bench ]; then
  echo "== bf16 GEMM routines on the DiT's shapes"
  timeout 300 $B/matmul-bench --backend cuda --dtype bf16 2>&1 | tee $OUT/matmul_bench.md
  BEST=$(awk '/^best-routine/ {print $2}' $OUT/matmul_bench.md)
fi
for R in $DEFAULT_ROUTINE $BEST; do
  echo "== ours, CUDA bf16, GEMM routine $R, profiled"
  SANA_HALF_MATMUL=$R timeout 240 $B/dit-forward --model /tmp/ck480/transformer --backend cuda --dtype bf16 $L --profile 2>&1 | tee $OUT/ours_bf16_$R.md
  [ "$R" = "$BEST" ] && break
done
if [ -x $B/dit-forward-old ]; then
  echo "== previous kernels (dit-forward-old), CUDA bf16"
  $B/dit-forward-old --model /tmp/ck480/transformer --backend cuda --dtype bf16 $L 2>&1 | tee $OUT/old_bf16.md
fi
echo "== reference (diffusers), same card"
RL="${REF_LATENTS:---latent 1x16x21x60x104 --latent 2x16x21x60x104}"
python3 tools/bench_reference.py --model /tmp/ck480/transformer --dtype bfloat16 $RL --profile 2>&1 | grep -v -i warn | tee $OUT/ref_bf16.md
