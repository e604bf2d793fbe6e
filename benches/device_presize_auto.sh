#!/usr/bin/env bash
# generate's pool pre-sizing policy on a large card: `auto` (the default) leaves it off where
# free memory is well over 1.7x the plan; `on` forces it. The FP8 480p clip, bf16 VAE, 8
# steps, nvidia-smi sampled every 0.2 s. Carry .devcarry/ (sana-video), .whl/, the tokenizer.
set -uo pipefail
source benches/device_unpack.sh >/dev/null 2>&1
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
P=/tmp/sana480p
[ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench > /dev/null 2>&1
[ -d $P-fp8 ] || $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -1
for mode in auto on; do
  ( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/smi-$mode.txt &
  MON=$!
  SANA_POOL_PRESIZE=$mode $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype bf16 \
    --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps 8 --cfg-scale 6 --seed 42 -o /tmp/auto.mp4 2>&1 | grep -E "^time:|^memory" | sed "s/^/SANA_POOL_PRESIZE=$mode: /"
  kill $MON; echo "SANA_POOL_PRESIZE=$mode: nvidia-smi peak $(sort -n /tmp/smi-$mode.txt | tail -1) MiB"
done
