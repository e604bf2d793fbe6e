#!/usr/bin/env bash
# Issue 8 on the GPU machine: LongSANA at the real 480p size (random weights), our engine
# against a PyTorch loop on the same card. Carry .devcarry/sana-video.xz (CUDA build),
# .whl/ (diffusers 0.42.1) and tests/fixtures/downloads/gemma-2-tokenizer (tokenizer.json may
# travel as tokenizer.json.xz to fit the carry limit).
#   build: a random full-size 480p pipeline in /tmp/sana480p (tools/fullsize_pipeline.py) and
#          a copy whose transformer is declared block-causal (/tmp/sana480p-long; same weights)
#   check: the PyTorch loop's stateful chunks against the block-masked fixture (CPU, f32)
#   ref:   tools/bench_longsana_reference.py: the DiT loop, LONG_SECONDS videos, bf16
#   ours:  `sana-video generate --seconds S` on CUDA, bf16 DiT, VAE in LONG_VAE_DTYPE,
#          chunks of 10 latent frames, all finished chunks in the state; nvidia-smi sampled
# LONG_STAGES (default "build check ref ours"), LONG_SECONDS (default "10 60").
set -uo pipefail
source benches/device_unpack.sh
STAGES=${LONG_STAGES:-build check ref ours}
SECS=${LONG_SECONDS:-10 60}
P=/tmp/sana480p; PL=/tmp/sana480p-long
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt; date -u | tee -a $OUT/gpu.txt
if [[ $STAGES == *build* ]]; then
  [ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i warn | tee $OUT/build.txt
  source benches/causal_copy.sh
fi
[[ $STAGES == *check* ]] && python3 tools/bench_longsana_reference.py --check tests/fixtures/longsana 2>&1 | grep -v -i warn | tee $OUT/ref_check.txt
[[ $STAGES == *ref* ]] && python3 tools/bench_longsana_reference.py --model $P/transformer --seconds $SECS 2>&1 | grep -v -i warn | tee $OUT/ref_loop.md
if [[ $STAGES == *ours* ]]; then
  for S in $SECS; do
    ( while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > $OUT/ours_${S}s_nvsmi.txt &
    MON=$!
    /usr/bin/time -v $B/sana-video generate --model $PL --backend cuda --dtype bf16 --vae-dtype ${LONG_VAE_DTYPE:-bf16} \
      --seconds $S --prompt "A red kite drifts over a green hill under a slowly moving sky." --seed 1 \
      -o /tmp/long_${S}s.mp4 > $OUT/ours_${S}s.txt 2>&1
    echo "exit $?" >> $OUT/ours_${S}s.txt
    kill $MON
    echo "peak nvidia-smi memory.used (MiB): $(sort -n $OUT/ours_${S}s_nvsmi.txt | tail -1)" | tee -a $OUT/ours_${S}s.txt
    grep -E "^chunk|done in|memory plan|Maximum resident|Elapsed|exit" $OUT/ours_${S}s.txt | tail -40
    command -v ffprobe >/dev/null && ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames /tmp/long_${S}s.mp4 | tee -a $OUT/ours_${S}s.txt
  done
fi
