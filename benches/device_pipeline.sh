#!/usr/bin/env bash
# Run on the GPU machine (the device tool) from the repository root, carrying .devcarry/
# (the stripped, xz-compressed CUDA build of sana-video), .whl/ (diffusers 0.42.1) and
# tests/fixtures/downloads/gemma-2-tokenizer. Stages (PIPE_STAGES, default "parity build ref ours"):
#   parity: the pipeline fixtures through `sana-video generate --backend cuda` (tools/pipeline_case_check.py)
#   build: a random full-size 480p pipeline folder in /tmp/sana480p (tools/fullsize_pipeline.py)
#   ref:   diffusers' SanaVideoPipeline, 81 frames 832x480, 50 steps, CFG 6, timed
#   ours:  `sana-video generate` with the same settings on CUDA (bf16), timed, MP4 checked
set -uo pipefail
source benches/device_unpack.sh
STAGES=${PIPE_STAGES:-parity build ref ours}
if [[ $STAGES == *parity* ]]; then
  echo "== pipeline fixtures on CUDA (f32) against diffusers"
  python3 tools/pipeline_case_check.py --bin $B/sana-video --backend cuda 2>&1 | tee $OUT/pipeline_parity_cuda.txt
fi
P=/tmp/sana480p
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[[ $STAGES == *build* ]] && python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i warn | tee $OUT/pipeline_build.txt
[[ $STAGES == *ref* ]] && python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-build 2>&1 | grep -v -i warn | tee $OUT/pipeline_reference.md
if [[ $STAGES == *ours* ]]; then
  nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee $OUT/pipeline_gpu.txt
  ( while sleep 2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > $OUT/pipeline_ours_nvsmi.txt &
  MON=$!
  $B/sana-video generate --model $P --backend cuda --dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps ${PIPE_STEPS:-50} --cfg-scale 6 --seed 42 -o $OUT/ours_480p.mp4 2>&1 | tee $OUT/pipeline_ours.txt
  kill $MON
  echo "peak nvidia-smi memory.used (MiB): $(sort -n $OUT/pipeline_ours_nvsmi.txt | tail -1)" | tee -a $OUT/pipeline_ours.txt
  ls -la $OUT/ours_480p.mp4 | tee -a $OUT/pipeline_ours.txt
  command -v ffprobe && ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames,r_frame_rate $OUT/ours_480p.mp4 | tee -a $OUT/pipeline_ours.txt
fi
