#!/usr/bin/env bash
# Resident FP8 / NVFP4 weights on CUDA (issue 9), on the GPU machine (device tool), from the
# repository root with .devcarry/ (xz CUDA builds of sana-video, dit-forward and the kernels
# test binary) and .whl/ (the diffusers wheel, for the checkpoint script) carried:
#   the dequantisation kernels against their references on CUDA (bf16 too),
#   one DiT forward of the random full-size 480p DiT in bf16: dense, FP8 and NVFP4 files with
#   the weights resident and dequantised at load, at a LongSANA chunk and at the CFG batch,
#   and the peak GPU memory of each. Logs to $OUT.
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
[ -x $B/kernels ] && SANA_TEST_BACKENDS=cuda $B/kernels --test-threads=1 --nocapture dequant 2>&1 | grep -E 'kernel =|test result|panicked' | tee $OUT/kernels_cuda.log
[ -d /tmp/ck480/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out /tmp/ck480/transformer --device cuda 2>&1 | grep -v -i warn
for f in fp8 nvfp4; do
  [ -d /tmp/ck480-$f ] || /usr/bin/time -f "quantize $f: %e s, peak RSS %M KB" $B/sana-video quantize --format $f --model /tmp/ck480/transformer --output /tmp/ck480-$f 2>&1 | tee -a $OUT/quantize.txt
done
run() {  # NAME MODEL [ENV=VALUE]
  local name=$1 model=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > $OUT/mem-$name.csv & local smi=$!
  env "$@" timeout 150 $B/dit-forward --model $model --backend cuda --dtype bf16 ${LATENTS:---latent 1x10x60x104 --latent 2x21x60x104} 2>&1 | tee $OUT/bench-$name.md
  kill $smi; echo "$name peak nvidia-smi $(sort -n $OUT/mem-$name.csv | tail -1) MiB" | tee -a $OUT/peaks.txt
}
run bf16 /tmp/ck480/transformer
run bf16-cublas-f32 /tmp/ck480/transformer SANA_CUBLAS=f32
run fp8-resident /tmp/ck480-fp8
run nvfp4-resident /tmp/ck480-nvfp4
run fp8-at-load /tmp/ck480-fp8 SANA_FP8_RESIDENT=0
run nvfp4-at-load /tmp/ck480-nvfp4 SANA_NVFP4_RESIDENT=0
