#!/usr/bin/env bash
# On the GPU machine (device tool), from the repository root: render the motion dataset,
# then train the DiT and text encoder over the VAE in $VAE (a carried vae/ folder) for
# TRAIN_MINUTES (default 7), writing $OUT/dit-run (loss.jsonl, pipeline/ in f16).
# Resumes from $RESUME/ckpt.pt (and its tokenizer/) if given.
set -euo pipefail
: "${VAE:?set VAE to the trained vae/ folder}"
DATA=/tmp/motion/all bash tools/train/render_dataset.sh
RUN=$OUT/dit-run
mkdir -p $RUN
if [ -n "${RESUME:-}" ]; then cp "$RESUME/ckpt.pt" $RUN/; cp -r "$RESUME/tokenizer" $RUN/; fi
python3 tools/train/train_dit.py --data /tmp/motion/all --vae "$VAE" --out $RUN --batch ${BATCH:-32} \
  --max-minutes ${TRAIN_MINUTES:-7} --log-every 100 --save-every 1000 2>&1 | grep -v -i warn | tail -40
rm -f $RUN/latents.pt
