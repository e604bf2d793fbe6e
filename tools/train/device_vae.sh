#!/usr/bin/env bash
# On the GPU machine (device tool), from the repository root: render the motion dataset
# with all cores, then train the VAE for TRAIN_MINUTES (default 6), writing the run to
# $OUT/vae-run (ckpt.pt to resume, loss.jsonl, vae/). Resumes from $RESUME/ckpt.pt if given.
set -euo pipefail
DATA=/tmp/motion
N=${CLIPS_PER_WORKER:-300}
W=$(nproc)
mkdir -p $DATA
t0=$(date +%s)
for i in $(seq 0 $((W - 1))); do
  python3 tools/dataset/motion_dataset.py --out $DATA/w$i --clips $N --shard $N --frames 17 --size 128 --seed $((1000 + i)) > /dev/null &
done
wait
mkdir -p $DATA/all
for i in $(seq 0 $((W - 1))); do mv $DATA/w$i/clips-00000.npz $DATA/all/clips-$(printf %05d $i).npz; done
echo "dataset: $((W * N)) clips in $(( $(date +%s) - t0 )) s"
RUN=$OUT/vae-run
mkdir -p $RUN
[ -n "${RESUME:-}" ] && cp "$RESUME/ckpt.pt" $RUN/
python3 tools/train/train_vae.py --data $DATA/all --out $RUN --steps ${TRAIN_STEPS:-100000} --batch ${BATCH:-16} \
  --max-minutes ${TRAIN_MINUTES:-6} --log-every 100 --save-every 1000 2>&1 | grep -v -i warn | tail -40
