#!/usr/bin/env bash
# One device-tool call: the built-in VAE's decoder fine-tuned on long clips for the causal
# model (builtin-model-long/vae). The VAE was trained on 17-frame clips; past ~frame 20 its
# causal caches reach a state it never saw and a round trip of a long clip darkens (dark blue
# 15,25,80 -> 9,9,32 by frame 48). The encoder stays frozen (latent statistics kept), so the
# DiTs' latents stay valid. From the repository root on the GPU machine, wheel in .whl/:
#
#   [SEED_BASE=40000] [FRAMES=81] [CLIPS=150] [LIMIT_S=540] bash tools/train/device_vae_long.sh
#
# Returns in $OUT: vae-long/{vae/, loss.jsonl}, check.txt (round trips, old and new decoder).
set -euo pipefail
export PYTHONUNBUFFERED=1
T0=$(date +%s)
LIMIT_S=${LIMIT_S:-540}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
D=/tmp/vae-long/data
DATA=$D SEED_BASE=${SEED_BASE:-40000} CLIPS_PER_WORKER=${CLIPS:-150} FRAMES=${FRAMES:-81} LONG=1 bash tools/train/render_dataset.sh
MIN=$(python3 -c "print(max(0.5, ($LIMIT_S - ($(date +%s) - $T0) - 60) / 60))")
python3 tools/train/train_vae.py --data $D --out $OUT/vae-long --init builtin-model/vae --decoder-only \
  --batch "${BATCH:-8}" --lr "${LR:-1e-4}" --warmup 50 --object-weight "${OBJ_W:-15}" --max-minutes "$MIN" \
  --log-every 50 --save-every 100000 2>&1 | grep -v -i warn | tail -30
rm -f $OUT/vae-long/ckpt.pt
python3 tools/train/check_long_vae.py builtin-model/vae $OUT/vae-long/vae | tee $OUT/check.txt
echo "[$(( $(date +%s) - T0 )) s] done"
