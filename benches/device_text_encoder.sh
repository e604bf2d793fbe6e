#!/usr/bin/env bash
# Run on the GPU machine (the device tool) from the repository root, with .devcarry/
# (xz-compressed, stripped CUDA builds: sana-video, text-encode, text_encoder_parity,
# prompt_parity; and Gemma-2's tokenizer.json / tokenizer_config.json, xz) and .whl/
# (diffusers 0.42.1 wheel) carried.
set -uo pipefail
source benches/device_unpack.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
date -u | tee -a $OUT/gpu.txt
TOK=tests/fixtures/downloads/gemma-2-tokenizer
mkdir -p $TOK && mv $B/tokenizer.json $B/tokenizer_config.json $TOK/ 2>/dev/null
sha256sum $TOK/tokenizer.json

STAGES=${TE_STAGES:-parity fullsize bench}
if [[ $STAGES == *parity* ]]; then
echo "== parity on CUDA (fixtures, f32, tolerance 1e-5)"
for t in text_encoder_parity prompt_parity; do
  SANA_TEST_BACKENDS=cuda SANA_FIXTURES=tests/fixtures SANA_GEMMA_TOKENIZER=$TOK $B/$t --test-threads=1 --nocapture 2>&1 \
    | grep -E 'rel L2|test result|panicked|FAILED' | tee -a $OUT/parity_cuda.log
done
fi

if [[ $STAGES == *fullsize* ]]; then
echo "== full-size random Gemma-2-2B + real tokenizer; diffusers reference (f64) and timings"
python3 tools/fullsize_text_encoder.py --tokenizer $TOK --out /tmp/g2 2>&1 | grep -v -i warn | tee $OUT/reference.md
$B/sana-video inspect /tmp/g2/pipeline | tee $OUT/inspect.txt
PROMPT="A small red ball bounces across a wooden floor, casting a soft shadow."
names="prompt_embeds negative_prompt_embeds prompt_attention_mask negative_prompt_attention_mask"
for dt in f32 bf16; do
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > /tmp/mem_$dt.txt &
  SMI=$!
  $B/sana-video debug encode-prompt --model /tmp/g2/pipeline --prompt "$PROMPT" --motion-score 30 \
    --backend cuda --dtype $dt --output /tmp/g2/ours_$dt.safetensors 2>&1 | tee -a $OUT/ours_cli.txt
  kill $SMI
  echo "$dt: nvidia-smi peak used MiB $(sort -n /tmp/mem_$dt.txt | tail -1) (idle $(head -1 /tmp/mem_$dt.txt))" | tee -a $OUT/ours_cli.txt
  python3 tools/compare.py /tmp/g2/ours_$dt.safetensors /tmp/g2/reference.safetensors $names | tee -a $OUT/fullsize_parity.txt
done
fi
if [[ $STAGES == *bench* ]]; then
for dt in bf16 f32; do
  $B/text-encode --model /tmp/g2/pipeline --backend cuda --dtype $dt --iters 5 2>&1 | tee -a $OUT/bench_ours.md
done
fi
