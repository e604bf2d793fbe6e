#!/usr/bin/env bash
# cuBLASLt GEMMs on CUDA (issue 9), on the GPU machine (device tool), from the repository
# root with .devcarry/ (stripped xz CUDA builds of dit-forward, optionally matmul-bench, and
# test binaries) and .whl/ (diffusers 0.42.1) carried. Logs to $OUT:
#   parity of every test binary carried, on CUDA (f32 products go through cuBLASLt too);
#   cuBLASLt against cubek's best routine on the DiT's GEMM shapes (if matmul-bench is carried);
#   the 480p DiT forward in bf16: cuBLASLt on CubeCL's stream for every GEMM (the default),
#   cubek alone (`SANA_CUBLAS=off`), then profiled; the diffusers reference (REF=1).
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
date -u | tee -a $OUT/gpu.txt
for t in kernels dit_parity quant longsana; do
  [ -x $B/$t ] && SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures timeout ${TEST_TIMEOUT:-200} $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'rel|max abs|test result|panicked|FAILED|cuBLAS' | tee $OUT/parity_$t.log
done
[ -x $B/matmul-bench ] && timeout 150 $B/matmul-bench --backend cuda --dtype bf16 --routine cublas --routine tma-specialized-mma 2>&1 | tee $OUT/matmul_bench.md
[ -d /tmp/ck480/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn
DF="timeout 120 $B/dit-forward --model /tmp/ck480/transformer --backend cuda --dtype bf16"
$DF --latent 1x10x60x104 --latent 2x21x60x104 2>&1 | tee $OUT/ours_bf16_cublas.md
SANA_CUBLAS=off $DF --latent 1x10x60x104 --latent 2x21x60x104 2>&1 | tee $OUT/ours_bf16_cubek.md
$DF --latent 2x21x60x104 --profile 2>&1 | tee $OUT/ours_bf16_cublas_profile.md
[ "${REF:-1}" = 1 ] && python3 tools/bench_reference.py --model /tmp/ck480/transformer --dtype bfloat16 --latent 1x16x10x60x104 --latent 2x16x21x60x104 2>&1 | grep -v -i warn | tee $OUT/ref_bf16.md
