#!/usr/bin/env bash
# Issue 9's memory target on the GPU machine (device tool): the 480p 5 s clip with FP8
# weights and a bf16 VAE (the low-memory configuration), with SANA_MEMORY_TRACE=1 (the
# pool's and the driver's view of device memory at each stage's end) and nvidia-smi sampled
# every 0.2 s with timestamps, the CLI's lines timestamped too. Carry .devcarry/ (sana-video),
# .whl/ (diffusers) and tests/fixtures/downloads/gemma-2-tokenizer.
set -uo pipefail
source benches/device_unpack.sh
TOK=tests/fixtures/downloads/gemma-2-tokenizer
[ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
P=/tmp/sana480p
[ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing"
[ -d $P-fp8 ] || $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -1
# MEM_PRESIZE="1 0": also run with SANA_POOL_PRESIZE=0 (the pool pre-sizing off) to compare;
# MEM_STEPS: denoising steps (the first step's transient shows with a few).
for presize in ${MEM_PRESIZE:-1}; do
for vae in ${MEM_VAE_DTYPES:-bf16}; do
  tag=$vae; [ "$presize" = 0 ] && tag=${vae}_nopresize
  ( while sleep 0.2; do echo "$(date +%s.%N | cut -c1-14) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits)"; done ) > /tmp/nvsmi_mem_$tag.txt &
  MON=$!
  SANA_POOL_PRESIZE=$presize SANA_MEMORY_TRACE=1 $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --vae-dtype $vae \
    --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps ${MEM_STEPS:-50} --cfg-scale 6 --seed 42 -o /tmp/mem_$tag.mp4 2>&1 \
    | while IFS= read -r l; do echo "$(date +%s.%N | cut -c1-14) $l"; done | grep -v -E "^[0-9.]+ +\[" | tee $OUT/memory_$tag.txt
  kill $MON
  echo "nvidia-smi peak (MiB): $(awk '{print $2}' /tmp/nvsmi_mem_$tag.txt | sort -n | tail -1)" | tee -a $OUT/memory_$tag.txt
  cp /tmp/nvsmi_mem_$tag.txt $OUT/nvsmi_$tag.txt
done
done
