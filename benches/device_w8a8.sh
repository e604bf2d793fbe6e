#!/usr/bin/env bash
# W8A8 on FP8 tensor cores (issue 9), on the GPU machine (device tool), from the repository
# root with .devcarry/ (xz CUDA builds of sana-video, dit-forward and the kernels, w8a8 and
# dit_parity test binaries) and .whl/ (the diffusers wheel) carried. Logs to $OUT:
#   tests.log        the FP8 product (cuBLASLt) against a float64 host product and the
#                    emulation, CPU and CUDA; the W8A8 DiT fixture on CPU (emulated) and CUDA
#                    (tensor cores); DiT parity on CUDA (f32, the unchanged paths);
#   fullsize.txt     one forward of the random full-size 480p DiT (float64 diffusers
#                    reference at a 2x16x5x30x52 latent) with bf16, FP8 W8A16 and FP8 W8A8
#                    weights, bf16 compute: relative error of each against the reference;
#   bench-*.md       dit-forward at a LongSANA chunk and the 480p CFG batch: bf16, FP8 W8A16,
#                    FP8 W8A8, W8A8 with cuBLASLt's fast accumulation; peaks.txt GPU memory;
#   timeline-w8a8.md the W8A8 forward's GPU time per stage (SANA_PROFILE_MODE=timeline).
# W8A8_PART=c: 480p 5 s text-to-video end to end with FP8 weights and W8A8 (the random
# full-size pipeline of device_e2e.sh, quantised by `sana-video quantize`; needs sana-video and
# the Gemma-2 tokenizer carried) -> pipeline_fp8.txt with the peak GPU memory.
# W8A8_PART=a runs only the checkpoint, quantisation and full-size error steps (needs
# sana-video), W8A8_PART=b only the tests and benchmarks (needs the test binaries and
# dit-forward; makes the checkpoint, and its FP8 copy with `dit-forward --quantize`, when
# part a has not): the binaries together exceed what one call carries.
set -uo pipefail
PART=${W8A8_PART:-ab}
source benches/device_unpack.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } | tee $OUT/gpu.txt
export SANA_FIXTURES=tests/fixtures
C=/tmp/ck480
if [[ $PART == *a* ]]; then
[ -d $C/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $C/transformer --device cuda 2>&1 | grep -v -i warn
[ -d $C-fp8 ] || /usr/bin/time -f "quantize fp8: %e s, peak RSS %M KB" $B/sana-video quantize --format fp8 --model $C/transformer --output $C-fp8 2>&1 | tail -2 | tee $OUT/quantize.txt
python3 tools/fullsize_parity.py --model $C/transformer --out /tmp/fp --latent 2x16x5x30x52 2>&1 | grep -v -i warn
for v in "bf16 $C/transformer auto" "fp8-w8a16 $C-fp8 off" "fp8-w8a8 $C-fp8 on"; do
  set -- $v
  SANA_FP8_ACTIVATIONS=$3 $B/sana-video debug transformer --backend cuda --dtype bf16 --model $2 --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours-$1.safetensors
  echo "== $1: against the float64 reference"; python3 tools/compare.py /tmp/fp/ours-$1.safetensors /tmp/fp/outputs.safetensors
done 2>&1 | tee $OUT/fullsize.txt
fi
if [[ $PART == *c* ]]; then
  TOK=tests/fixtures/downloads/gemma-2-tokenizer P=/tmp/sana480p
  [ -f $TOK/tokenizer.json ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" $TOK/tokenizer.json.xz $TOK/tokenizer.json
  [ -d $P/transformer ] || python3 tools/fullsize_pipeline.py --tokenizer $TOK --out $P --skip-bench 2>&1 | grep -v -i -E "warn|Writing"
  [ -d $P-fp8 ] || /usr/bin/time -f "quantize fp8 (pipeline): %e s, peak RSS %M KB" $B/sana-video quantize --format fp8 --model $P --output $P-fp8 2>&1 | tail -2 | tee $OUT/quantize-pipeline.txt
  ( while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > /tmp/nvsmi-fp8.txt &
  MON=$!
  SANA_FP8_ACTIVATIONS=on SANA_PROFILE_STEP=3 timeout 300 $B/sana-video generate --model $P-fp8 --backend cuda --dtype bf16 --prompt "A small red ball bounces across a wooden floor, casting a soft shadow." \
    --frames 81 --height 480 --width 832 --steps 50 --cfg-scale 6 --seed 42 -o /tmp/ours_480p_fp8.mp4 2>&1 | awk '!/^ *\[/ || / (1|2|10|25|50)\/50 / || / 81\/81 /' | tee $OUT/pipeline_fp8.txt
  kill $MON
  echo "peak nvidia-smi memory.used (MiB): $(sort -n /tmp/nvsmi-fp8.txt | tail -1)" | tee -a $OUT/pipeline_fp8.txt
  ls -la /tmp/ours_480p_fp8.mp4 | tee -a $OUT/pipeline_fp8.txt
fi
[[ $PART == *b* ]] || exit 0
[ -d $C/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $C/transformer --device cuda 2>&1 | grep -v -i warn
[ -d $C-fp8 ] || SANA_FP8_ACTIVATIONS=on timeout 300 $B/dit-forward --model $C/transformer --quantize fp8 --quantized-dir $C-fp8 --backend cuda --dtype bf16 --latent 1x10x60x104 2>&1 | tee $OUT/bench-quantize.md
SANA_TEST_BACKENDS=cpu,cuda $B/kernels --test-threads=1 --nocapture fp8_product 2>&1 | grep -E 'rel L2|test result|panicked' | tee $OUT/tests.log
SANA_TEST_BACKENDS=cpu,cuda $B/w8a8 --test-threads=1 --nocapture 2>&1 | grep -E 'rel L2|test result|panicked' | tee -a $OUT/tests.log
SANA_TEST_BACKENDS=cuda $B/dit_parity --test-threads=1 2>&1 | grep -E 'test result|panicked|FAILED' | tee -a $OUT/tests.log
run() {  # NAME MODEL [ENV=VALUE ...]
  local name=$1 model=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/mem-$name.csv & local smi=$!
  env "$@" timeout 150 $B/dit-forward --model $model --backend cuda --dtype bf16 ${LATENTS:---latent 1x10x60x104 --latent 2x21x60x104 --mask-pad 250} 2>&1 | tee $OUT/bench-$name.md
  kill $smi; echo "$name peak nvidia-smi $(sort -n /tmp/mem-$name.csv | tail -1) MiB" | tee -a $OUT/peaks.txt
}
run bf16 $C/transformer
run fp8-w8a16 $C-fp8 SANA_FP8_ACTIVATIONS=off
# Fast accumulation is the default since 2026-11-29 (tenth run); the precise mode for comparison.
run fp8-w8a8 $C-fp8 SANA_FP8_ACTIVATIONS=on
run fp8-w8a8-precise $C-fp8 SANA_FP8_ACTIVATIONS=on SANA_FP8_FAST_ACCUM=0
SANA_FP8_ACTIVATIONS=on SANA_PROFILE_MODE=timeline timeout 150 $B/dit-forward --model $C-fp8 --backend cuda --dtype bf16 --latent 2x21x60x104 --mask-pad 250 --profile 2>&1 | tee $OUT/timeline-w8a8.md
