#!/usr/bin/env bash
# Issue 9 on the GPU machine (device tool, one H200/H100), after the TF32 linear-attention
# sums and the caption trimming: carry .devcarry/ (xz CUDA builds: sana-video built with
# `--no-default-features --features flex,wgpu,cuda`, no built-in models; dit-forward; the
# kernels, dit_parity and longsana test binaries), .whl/ (diffusers) and .gl/ (the Vulkan
# loader and the glvnd libraries NVIDIA's Vulkan driver loads, per the device README:
# libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2; without glvnd wgpu finds
# no adapter). Everything lands in $OUT as it finishes:
#   tests.log       linear-attention kernels, DiT parity and LongSANA on CUDA
#   fullsize.txt    one full-size forward (bf16; FP8 W8A8) against the float64 reference
#   bench-*.md      dit-forward bf16 and FP8 W8A8 at a LongSANA chunk and the 480p CFG batch
#                   (300 caption tokens, 250 of them padding), peaks.txt; timeline-*.md
#   vulkan.md       the same forward through wgpu on NVIDIA's Vulkan driver (f16: WGSL has no bf16)
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
source benches/device_unpack.sh >/dev/null
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } | tee $OUT/gpu.txt
export SANA_FIXTURES=tests/fixtures
SANA_TEST_BACKENDS=cuda $B/kernels --test-threads=1 --nocapture linear_attention segment 2>&1 | grep -E 'f16|test result|panicked' | tee $OUT/tests.log
SANA_TEST_BACKENDS=cuda $B/dit_parity --test-threads=1 2>&1 | grep -E 'test result|panicked|FAILED' | tee -a $OUT/tests.log
SANA_TEST_BACKENDS=cuda $B/longsana --test-threads=1 2>&1 | grep -E 'test result|panicked|FAILED' | tee -a $OUT/tests.log
C=/tmp/ck480
[ -d $C/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $C/transformer --device cuda 2>&1 | grep -v -i warn
[ -d $C-fp8 ] || $B/sana-video quantize --format fp8 --model $C/transformer --output $C-fp8 2>&1 | tail -1
python3 tools/fullsize_parity.py --model $C/transformer --out /tmp/fp --latent 2x16x5x30x52 2>&1 | grep -v -i warn
for v in "bf16 $C/transformer" "fp8-w8a8 $C-fp8"; do
  set -- $v
  $B/sana-video debug transformer --backend cuda --dtype bf16 --model $2 --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours-$1.safetensors
  echo "== $1: against the float64 reference"; python3 tools/compare.py /tmp/fp/ours-$1.safetensors /tmp/fp/outputs.safetensors
done 2>&1 | tee $OUT/fullsize.txt
run() {  # NAME MODEL [dit-forward flags]
  local name=$1 model=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/mem-$name.csv & local smi=$!
  timeout 150 $B/dit-forward --model $model --mask-pad 250 "$@" 2>&1 | tee $OUT/bench-$name.md
  kill $smi; echo "$name peak nvidia-smi $(sort -n /tmp/mem-$name.csv | tail -1) MiB" | tee -a $OUT/peaks.txt
}
run bf16 $C/transformer --backend cuda --dtype bf16 --latent 1x10x60x104 --latent 2x21x60x104
run fp8-w8a8 $C-fp8 --backend cuda --dtype bf16 --latent 1x10x60x104 --latent 2x21x60x104
SANA_PROFILE_MODE=timeline timeout 100 $B/dit-forward --model $C-fp8 --backend cuda --dtype bf16 --latent 2x21x60x104 --mask-pad 250 --profile 2>&1 | grep -E "^\| (la\.|attn|ff\.|norm|Timeline)|^## " | tee $OUT/timeline-fp8-w8a8.md
run vulkan-f16 $C/transformer --backend wgpu --dtype f16 --latent 1x10x60x104 --latent 2x21x60x104 --warmup 1 --iters 1
