#!/usr/bin/env bash
# Does the pool pre-sizing (SANA_POOL_PRESIZE) cost speed? The FP8 480p clip with a bf16 VAE,
# 20 steps, alternating pre-sizing on and off twice in one session (the first run also warms
# the machine's caches). Carry .devcarry/ (sana-video), .whl/ and the Gemma-2 tokenizer.
set -uo pipefail
source benches/device_unpack.sh >/dev/null 2>&1
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
P=/tmp/sana480p
[ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench > /dev/null 2>&1
[ -d $P-fp8 ] || $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -1
for run in 1 2; do
  for presize in 1 0; do
    SANA_POOL_PRESIZE=$presize $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype bf16 \
      --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
      --frames 81 --height 480 --width 832 --steps ${AB_STEPS:-20} --cfg-scale 6 --seed 42 -o /tmp/ab.mp4 2>&1 \
      | grep -E "^time:|^memory:" | sed "s/^/run $run, SANA_POOL_PRESIZE=$presize: /"
  done
done
