#!/usr/bin/env bash
# `--backend vulkan` (wgpu pinned to Vulkan, CubeCL's SPIR-V kernels, cooperative-matrix
# GEMMs; build feature `vulkan`) on the GPU machine's NVIDIA Vulkan driver, against the CUDA
# path in the same call. Stages (SPIRV_STAGES, default "tests matmul forward"):
#   tests:   the kernel, DiT parity and quantisation tests with SANA_TEST_BACKENDS=vulkan
#   matmul:  `matmul-bench --backend vulkan --dtype f16`: every cubek routine on the DiT's GEMMs
#   forward: the random full-size 480p DiT forward (15,600 and 65,520 tokens), vulkan f16
#            and, for the ratio, CUDA bf16 and f16
#   parity:  one full-size forward against the float64 diffusers reference, vulkan f16 and f32
#   pipeline: the random full-size 480p pipeline (tools/fullsize_pipeline.py), `sana-video
#            generate --backend vulkan --dtype f16`, 81 frames, SPIRV_STEPS steps (default 4),
#            then the same on CUDA bf16
#   long:    LongSANA 10 s at 480p on vulkan f16 (the pipeline's transformer declared
#            block-causal, benches/causal_copy.sh)
# Carry .devcarry/ (xz of sana-video, dit-forward, matmul-bench, and the test binaries
# kernels, dit_parity and quant, all built with `--features cuda,vulkan`; a stage runs what
# was carried), .gl/ (the Vulkan loader
# and glvnd .debs, see device_e2e.sh) and .whl/ (diffusers, for the checkpoint maker).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
source benches/device_unpack.sh
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
STAGES=${SPIRV_STAGES:-tests matmul forward}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } | tee $OUT/gpu.txt
if [[ $STAGES == *tests* ]]; then
  for t in kernels dit_parity quant; do
    [ -x $B/$t ] || continue
    # quant's plan test reads builtin-model/ from the build machine's path.
    SANA_TEST_BACKENDS=vulkan SANA_FIXTURES=tests/fixtures timeout 300 $B/$t --test-threads=1 --nocapture --skip fp8_plan_estimate 2>&1 \
      | grep -E 'rel|test |test result|panicked|error' | tee -a $OUT/tests_vulkan.log
  done
fi
if [[ $STAGES == *matmul* ]]; then
  timeout 240 $B/matmul-bench --backend vulkan --dtype f16 --iters 3 2>&1 | tee $OUT/matmul_vulkan.md
fi
CK=/tmp/ck480/transformer
if [[ $STAGES == *forward* || $STAGES == *parity* ]]; then
  [ -d $CK ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $CK --device cuda 2>&1 | grep -v -i warn
fi
if [[ $STAGES == *forward* ]]; then
  { for be in ${SPIRV_FORWARD:-vulkan:f16 cuda:bf16 cuda:f16}; do
      set -- ${be/:/ }
      echo "== $1 $2"
      timeout 300 $B/dit-forward --model $CK --backend $1 --dtype $2 --latent 1x10x60x104 --latent 2x21x60x104 --mask-pad 250 \
        --warmup 1 --iters ${SPIRV_ITERS:-2} ${SPIRV_FORWARD_ARGS:-} 2>&1
    done; } | tee $OUT/forward.md
fi
if [[ $STAGES == *parity* ]]; then
  python3 tools/fullsize_parity.py --model $CK --out /tmp/fp --latent 2x16x5x30x52 2>&1 | grep -v -i warn | tail -3
  for dt in f16 f32; do
    timeout 300 $B/sana-video debug transformer --backend vulkan --dtype $dt --model $CK --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours_$dt.safetensors 2>&1 | tail -2
    python3 tools/compare.py /tmp/fp/ours_$dt.safetensors /tmp/fp/outputs.safetensors 2>&1 | sed "s/^/vulkan $dt: /"
  done | tee $OUT/parity.txt
fi
if [[ $STAGES == *pipeline* ]]; then
  TOK=tests/fixtures/downloads/gemma-2-tokenizer; P=/tmp/sana480p
  [ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
  [ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing" | tail -3
  for be in "vulkan f16" "cuda bf16"; do
    set -- $be
    echo "== generate on $1 $2"
    timeout 300 $B/sana-video generate --model $P --backend $1 --dtype $2 --vae-dtype $2 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
      --frames 81 --height 480 --width 832 --steps ${SPIRV_STEPS:-4} --cfg-scale 6 --seed 42 -o /tmp/ours_$1.mp4 2>&1 | grep -v -E "^\s*\[" | tail -25
  done | tee $OUT/pipeline.txt
fi
if [[ $STAGES == *long* ]]; then
  TOK=tests/fixtures/downloads/gemma-2-tokenizer; P=/tmp/sana480p; PL=/tmp/sana480p-long
  [ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
  [ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing" | tail -3
  source benches/causal_copy.sh
  timeout 300 $B/sana-video generate --model $PL --backend vulkan --dtype f16 --vae-dtype f16 --seconds 10 \
    --prompt "A red kite drifts over a green hill under a slowly moving sky." --seed 1 -o /tmp/long_vk.mp4 2>&1 | grep -v -E "^\s*\[" | tail -30 | tee $OUT/long.txt
fi
