#!/usr/bin/env bash
# Issue 9's harness on the GPU machine (device tool), one call, ours and the reference on the
# same card: (E2E_STAGES, default "forward pipeline long")
#   forward:  the 480p DiT forward (CFG batch, 65,520 tokens, and a 15,600-token chunk), ours
#             (dit-forward) and diffusers' (tools/bench_reference.py), bf16
#   pipeline: 480p 5 s text-to-video, 50 steps, CFG 6: diffusers' SanaVideoPipeline, then
#             `sana-video generate` with step 3 profiled (SANA_PROFILE_STEP)
#   long:     LongSANA 10 s at 480p: `sana-video generate --seconds 10` (LONG_TIMEOUT, default
#             150 s), then the PyTorch loop when LONG_REF=1
#   fp8:      the pipeline quantised by `sana-video quantize --format fp8`: the forward and the
#             480p generation again, W8A8 on FP8 tensor cores (the default where they exist)
#   vulkan:   the forward through wgpu on NVIDIA's Vulkan driver, f16 (needs .gl/ carried with
#             the Vulkan loader and glvnd .debs: libvulkan1 libegl1 libglvnd0 libopengl0 libgl1
#             libglx0 libgles2)
# The forward runs on the pipeline's random transformer (same config as
# tools/make_fullsize_checkpoint.py's 480p).
# Carry .devcarry/ (stripped xz CUDA builds of sana-video and dit-forward; sana-video built with
# `--no-default-features --features flex,wgpu,cuda` leaves out the built-in models, 11 MB
# instead of 43 MB compressed), .whl/ (diffusers
# 0.42.1) and tests/fixtures/downloads/gemma-2-tokenizer (tokenizer.json may travel as
# tokenizer.json.xz). Few files come back from the device tool, so each stage writes one.
# E2E_REF=0 skips the diffusers runs (ours only); E2E_FP8_BF16_VAE=1 adds an FP8 run with a
# bf16 VAE (the low-memory configuration); E2E_FORWARD_ARGS adds dit-forward flags
# (e.g. "--profile", with SANA_PROFILE_MODE=timeline for GPU time per stage).
set -uo pipefail
source benches/device_unpack.sh
STAGES=${E2E_STAGES:-forward pipeline long}
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } | tee $OUT/gpu.txt
peak() { sort -n $1 | tail -1; }
P=/tmp/sana480p; PL=/tmp/sana480p-long
[ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing"
if [[ $STAGES == *forward* ]]; then
  { timeout 150 $B/dit-forward --model $P/transformer --backend cuda --dtype bf16 --latent 1x10x60x104 --latent 2x21x60x104 --mask-pad 250 ${E2E_FORWARD_ARGS:-} 2>&1
    [ "${E2E_REF:-1}" = 1 ] && python3 tools/bench_reference.py --model $P/transformer --dtype bfloat16 --latent 1x16x10x60x104 --latent 2x16x21x60x104 2>&1 | grep -v -i warn
  } | tee $OUT/forward.md
fi
if [[ $STAGES == *pipeline* ]]; then
  [ "${E2E_REF:-1}" = 1 ] && python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-build 2>&1 | grep -v -i warn | tee $OUT/pipeline_reference.md
  ( while sleep 2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/nvsmi.txt &
  MON=$!
  # SANA_VAE_TF32=0: exact f32 VAE convs, as the reference runs here (TF32 off)
  SANA_VAE_TF32=0 SANA_PROFILE_STEP=3 $B/sana-video generate --model $P --backend cuda --dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps 50 --cfg-scale 6 --seed 42 -o /tmp/ours_480p.mp4 2>&1 | awk '!/^ *\[/ || / (1|2|10|25|50)\/50 / || / 81\/81 /' | tee $OUT/pipeline_ours.txt
  kill $MON
  { echo "peak nvidia-smi memory.used (MiB): $(peak /tmp/nvsmi.txt)"; ls -la /tmp/ours_480p.mp4
    command -v ffprobe >/dev/null && ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames,r_frame_rate /tmp/ours_480p.mp4; } | tee -a $OUT/pipeline_ours.txt
fi
if [[ $STAGES == *long* ]]; then
  source benches/causal_copy.sh
  ( while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/nvsmi_long.txt &
  MON=$!
  timeout ${LONG_TIMEOUT:-150} $B/sana-video generate --model $PL --backend cuda --dtype bf16 --vae-dtype bf16 --seconds 10 \
    --prompt "A red kite drifts over a green hill under a slowly moving sky." --seed 1 -o /tmp/long_10s.mp4 2>&1 | grep -v -E "^\s*\[" | tee -a $OUT/long.md
  kill $MON
  { echo "peak nvidia-smi memory.used (MiB): $(peak /tmp/nvsmi_long.txt)"
    command -v ffprobe >/dev/null && ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames /tmp/long_10s.mp4; } | tee -a $OUT/long.md
  [ "${LONG_REF:-0}" = 1 ] && python3 tools/bench_longsana_reference.py --model $P/transformer --seconds 10 2>&1 | grep -v -i warn | tee -a $OUT/long.md
fi
if [[ $STAGES == *fp8* ]]; then
  [ -d $P-fp8 ] || $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -1 | tee $OUT/fp8.md
  timeout 150 $B/dit-forward --model $P-fp8/transformer --backend cuda --dtype bf16 --latent 1x10x60x104 --latent 2x21x60x104 --mask-pad 250 2>&1 | tee -a $OUT/fp8.md
  ( while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/nvsmi_fp8.txt &
  MON=$!
  $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps 50 --cfg-scale 6 --seed 42 -o /tmp/ours_480p_fp8.mp4 2>&1 | awk '!/^ *\[/ || / (1|2|10|25|50)\/50 / || / 81\/81 /' | tee -a $OUT/fp8.md
  kill $MON
  echo "peak nvidia-smi memory.used (MiB): $(peak /tmp/nvsmi_fp8.txt)" | tee -a $OUT/fp8.md
  if [ "${E2E_FP8_BF16_VAE:-0}" = 1 ]; then
    # The low-memory configuration: FP8 weights and a bf16 VAE (issue 9's 8 GiB target).
    ( while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/nvsmi_fp8b.txt &
    MON=$!
    $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
      --frames 81 --height 480 --width 832 --steps 50 --cfg-scale 6 --seed 42 -o /tmp/ours_480p_fp8b.mp4 2>&1 | awk '!/^ *\[/ || / (1|2|10|25|50)\/50 / || / 81\/81 /' | tee -a $OUT/fp8.md
    kill $MON
    echo "peak nvidia-smi memory.used (MiB), bf16 VAE: $(peak /tmp/nvsmi_fp8b.txt)" | tee -a $OUT/fp8.md
  fi
fi
if [[ $STAGES == *vulkan* ]]; then
  for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
  VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json timeout 200 $B/dit-forward --model $P/transformer --backend wgpu --dtype f16 \
    --latent 1x10x60x104 --latent 2x21x60x104 --mask-pad 250 --warmup 1 --iters 1 2>&1 | tee $OUT/vulkan.md
fi
