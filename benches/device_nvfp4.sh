#!/usr/bin/env bash
# NVFP4 W4A4 and the GLU conv's launch settings (issue 9), on the GPU machine (device tool),
# from the repository root with .devcarry/ (xz CUDA builds of sana-video, dit-forward and the
# quant and kernels test binaries) and .whl/ (the diffusers wheel) carried. Logs to $OUT:
#   tests.log     the NVFP4 tests on CUDA (activation quantiser bit for bit, W4A4 products:
#                 on FP4 tensor cores where the GPU has them, else the probe's reason and
#                 the emulation), the GLU conv test with its launch variants;
#   fullsize.txt  one forward of the random full-size 480p DiT (float64 diffusers reference
#                 at a 2x16x5x30x52 latent) with bf16, NVFP4 W4A16 and NVFP4 W4A4 (emulated
#                 on GPUs without FP4 tensor cores) weights: relative error of each;
#   glu.txt       the bf16 480p CFG-batch forward's GLU stages (timeline) for SANA_GLU
#                 settings (units, strip, vector, SiLU as the conv reads);
#   eval-*.json   the built-in model quantised to NVFP4, the evaluator on the 64 held-out
#                 prompts (seed 1, issue 6's command) on the CPU backend over the machine's
#                 cores (tools/eval_parallel.py), W4A16 and W4A4 (emulated).
# NVFP4_STAGES picks stages (default "tests fullsize glu"; "eval" needs builtin-model/).
set -uo pipefail
STAGES=${NVFP4_STAGES:-tests fullsize glu}
source benches/device_unpack.sh >/dev/null 2>&1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > $OUT/gpu.txt
export SANA_FIXTURES=tests/fixtures
if [[ $STAGES == *tests* ]]; then
SANA_TEST_BACKENDS=cuda $B/quant --test-threads=1 --nocapture nvfp4 2>&1 | grep -E 'rel L2|test |test result|panicked|note|equal' > $OUT/tests.log
[ -x $B/kernels ] && SANA_TEST_BACKENDS=cuda $B/kernels --test-threads=1 glu 2>&1 | grep -E 'test |test result|panicked' >> $OUT/tests.log
fi
C=/tmp/ck480
if [[ $STAGES == *fullsize* || $STAGES == *glu* ]]; then
[ -d $C/transformer ] || python3 tools/make_fullsize_checkpoint.py --variant 480p --out $C/transformer --device cuda 2>&1 | grep -v -i warn
[ -d $C-nvfp4 ] || /usr/bin/time -f "quantize nvfp4: %e s, peak RSS %M KB" $B/sana-video quantize --format nvfp4 --model $C/transformer --output $C-nvfp4 2>&1 | tail -2 > $OUT/quantize.txt
fi
if [[ $STAGES == *fullsize* ]]; then
python3 tools/fullsize_parity.py --model $C/transformer --out /tmp/fp --latent 2x16x5x30x52 2>&1 | grep -v -i warn | tail -3
for v in "bf16 $C/transformer auto" "nvfp4-w4a16 $C-nvfp4 off" "nvfp4-w4a4 $C-nvfp4 on"; do
  set -- $v
  SANA_NVFP4_ACTIVATIONS=$3 $B/sana-video debug transformer --backend cuda --dtype bf16 --model $2 --inputs /tmp/fp/inputs.safetensors --output /tmp/fp/ours-$1.safetensors 2>&1 | tail -2
  echo "== $1: against the float64 reference"; python3 tools/compare.py /tmp/fp/ours-$1.safetensors /tmp/fp/outputs.safetensors
done > $OUT/fullsize.txt 2>&1
fi
[[ $STAGES == *glu* ]] && for g in default 128,8,4,1 128,8,8,0 128,8,8,1 256,16,4,1 64,4,4,1 128,32,4,1; do
  echo "== SANA_GLU=$g"
  SANA_GLU=$g SANA_PROFILE_MODE=timeline timeout 100 $B/dit-forward --model $C/transformer --backend cuda --dtype bf16 --latent 2x21x60x104 --mask-pad 250 --profile 2>&1 | grep -E "Timeline|ff\.|error"
done > $OUT/glu.txt 2>&1
if [[ $STAGES == *eval* ]]; then
  $B/sana-video quantize --format nvfp4 --model builtin-model --output /tmp/bq4 2>&1 | tail -1 > $OUT/eval-quantize.txt
  for mode in off on; do
    SANA_NVFP4_ACTIVATIONS=$mode python3 tools/eval_parallel.py --bin $B/sana-video --prompts tools/dataset/heldout_prompts.txt --seeds 1 \
      --jobs $(nproc) --out /tmp/eval-nvfp4-$mode -- --model /tmp/bq4 --frames 17 --steps 20 --negative-prompt "" > /dev/null
    cp /tmp/eval-nvfp4-$mode/report.json $OUT/eval-nvfp4-w4a$([ $mode = on ] && echo 4 || echo 16).json
  done
fi
