#!/usr/bin/env bash
# On the GPU machine (device tool), from the repository root: render the motion dataset
# with all cores, then train the VAE for TRAIN_MINUTES (default 6), writing the run to
# $OUT/vae-run (ckpt.pt to resume, loss.jsonl, vae/). Resumes from $RESUME/ckpt.pt if given.
set -euo pipefail
DATA=/tmp/motion/all bash tools/train/render_dataset.sh
RUN=$OUT/vae-run
mkdir -p $RUN
[ -n "${RESUME:-}" ] && cp "$RESUME/ckpt.pt" $RUN/
python3 tools/train/train_vae.py --data /tmp/motion/all --out $RUN --steps ${TRAIN_STEPS:-100000} --batch ${BATCH:-16} \
  --max-minutes ${TRAIN_MINUTES:-6} --log-every 100 --save-every 1000 2>&1 | grep -v -i warn | tail -40
