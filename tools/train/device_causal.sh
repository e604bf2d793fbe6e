#!/usr/bin/env bash
# One device-tool call of the built-in causal model's training (tools/train/train_causal.py):
# render fresh clips (SEED_BASE), then fine-tune the DiT block-causally until the deadline.
# From the repository root on the GPU machine, with the diffusers wheel carried in .whl/:
#
#   SEED_BASE=20000 [INIT=<run folder> | INIT_TRANSFORMER=builtin-model-long/transformer INIT_STEP=N]
#     [LR=2e-4] [ANNEAL=1] [FRAMES=41 LONG=1 CLIPS=400] bash tools/train/device_causal.sh
#
# FRAMES=41 LONG=1: long-motion clips (11 latent frames) train windows of four chunks with the
# model's own samples as context (train_causal.py); 17 frames train the first boundary only.
#
# Returns in $OUT: run/{weights,ema}-NN.safetensors, state.json, loss.jsonl, transformer/ (f16).
set -euo pipefail
export PYTHONUNBUFFERED=1
T0=$(date +%s)
LIMIT_S=${LIMIT_S:-560}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
W=/tmp/causal; SEED_BASE=${SEED_BASE:-20000}
# A warm machine keeps /tmp: reuse clips rendered with this seed, else render afresh.
if [ ! -f $W/data/seed-$SEED_BASE ]; then
  rm -rf $W; mkdir -p $W
  DATA=$W/data SEED_BASE=$SEED_BASE CLIPS_PER_WORKER=${CLIPS:-1000} FRAMES=${FRAMES:-17} LONG=${LONG:-} \
    bash tools/train/render_dataset.sh
  touch $W/data/seed-$SEED_BASE
fi
# Loading, encoding and the teacher pairs take ~1 min before the training clock starts.
MIN=$(python3 -c "print(max(0.5, ($LIMIT_S - ($(date +%s) - $T0) - ${MARGIN_S:-130}) / 60))")
python3 tools/train/train_causal.py --data $W/data --pipeline builtin-model --out $OUT/run ${INIT:+--init "$INIT"} \
  ${INIT_TRANSFORMER:+--init-transformer "$INIT_TRANSFORMER" --init-step "${INIT_STEP:-0}"} \
  --batch "${BATCH:-128}" --lr "${LR:-2e-4}" --max-minutes "$MIN" --compile ${ANNEAL:+--anneal} \
  ${SELF_ROLLOUT:+--self-rollout "$SELF_ROLLOUT"} 2>&1 | grep -v -i warn
echo "[$(( $(date +%s) - T0 )) s] done"
