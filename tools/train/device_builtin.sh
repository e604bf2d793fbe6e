#!/usr/bin/env bash
# One device-tool call of the built-in model's training (the call's 10-minute limit sets the
# plan; LIMIT_S is the wall-clock budget of this script, default 560 s). From the repository
# root on the GPU machine, with the diffusers wheel carried in .whl/:
#
#   STAGE=1 VAE_INIT=<vae/ folder>   render clips (seeds SEED_BASE+worker), train the whole VAE
#                                    for VAE_MINUTES, then, in parallel until the deadline, the
#                                    DiT + text encoder on its latents and the VAE's decoder
#                                    alone (encoder frozen, so those latents stay valid).
#   STAGE=2 VAE_INIT=<vae/> DIT_INIT=<run folder: weights-*.safetensors, state.json, tokenizer/>
#                                    render fresh clips (another SEED_BASE), continue both.
#   STAGE=vae VAE_INIT=<vae/>         render, then train the whole VAE until the deadline on
#                                    VAE_FRAMES-frame windows (default 0: whole 17-frame clips),
#                                    batch VAE_BATCH (32), learning rate VAE_LR (2e-4), extra loss
#                                    weight OBJ_W (10) on object pixels; then check_vae.py on it.
#   DIT_INIT_PIPELINE=<pipeline folder, e.g. builtin-model> instead of DIT_INIT: start the DiT
#                                    and text encoder from a shipped folder (nothing to carry).
#   Options: BOOST (e.g. pink,purple:3: oversample those captions), DIT_BATCH, DIT_LR, DIT_WARMUP, DECODER=0 (DiT alone), PROFILE=N (torch.profiler table
#   of N steps in dit/profile.txt), COMPILE=1 (torch.compile the transformer),
#   ANNEAL=1 (learning rate down to 10% by the deadline), CLIPS, SEED_BASE.
#
# Returns in $OUT: vae/ (f32), dit/{weights,ema}-NN.safetensors (f32, < 16 MiB each) and
# small.tar (tokenizer, loss logs, state.json). Assemble the f16 pipeline folder locally:
#   python3 tools/train/train_dit.py --export-only --out RUN --vae RUN/vae --data none
set -euo pipefail
export PYTHONUNBUFFERED=1
T0=$(date +%s)
LIMIT_S=${LIMIT_S:-560}
left() { echo $(( LIMIT_S - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
# A warm machine keeps /tmp: start clean (a stale latents.pt would pair old clips with new captions).
W=/tmp/builtin; D=$W/data; rm -rf $W; mkdir -p $W $OUT/dit
DATA=$D SEED_BASE=${SEED_BASE:-1000} CLIPS_PER_WORKER=${CLIPS:-1000} bash tools/train/render_dataset.sh
VAE=$VAE_INIT
if [ "$STAGE" = vae ]; then
  python3 tools/train/train_vae.py --data $D --out $W/vae-full --init "$VAE_INIT" --frames "${VAE_FRAMES:-0}" \
    --batch "${VAE_BATCH:-32}" --lr "${VAE_LR:-2e-4}" --object-weight "${OBJ_W:-10}" \
    --max-minutes "$(python3 -c "print(($(left) - 75) / 60)")" --log-every 50 --save-every 100000 2>&1 | grep -v -i warn > $W/vae-full.log
  tail -8 $W/vae-full.log
  cp -r $W/vae-full/vae $OUT/vae
  python3 tools/train/check_vae.py --vae $OUT/vae --clips 30 --verbose 2>&1 | grep -v -i warn | tee $W/check_vae.log | tail -4
  tar cf $OUT/small.tar -C $W --exclude='*.safetensors' --exclude='*.pt' vae-full vae-full.log check_vae.log
  exit 0
fi
if [ "$STAGE" = 1 ]; then
  python3 tools/train/train_vae.py --data $D --out $W/vae-full --init "$VAE_INIT" --frames 9 --batch 64 \
    --max-minutes "${VAE_MINUTES:-3.5}" --log-every 50 --save-every 100000 2>&1 | grep -v -i warn > $W/vae-full.log
  VAE=$W/vae-full/vae
fi
echo "[$(( $(date +%s) - T0 )) s] DiT and decoder start; $(left) s left"
DIT_MIN=$(python3 -c "print(max(0.5, ($(left) - 110) / 60))")
DEC_MIN=$(python3 -c "print(max(0.5, ($(left) - 50) / 60))")
python3 tools/train/train_dit.py --data $D --vae "$VAE" --out $W/dit ${DIT_INIT:+--init "$DIT_INIT"} \
  ${DIT_INIT_PIPELINE:+--init-pipeline "$DIT_INIT_PIPELINE" --init-step "${INIT_STEP:-0}"} \
  ${BOOST:+--boost "$BOOST"} \
  --batch "${DIT_BATCH:-64}" --lr "${DIT_LR:-4e-4}" --warmup "${DIT_WARMUP:-300}" --profile "${PROFILE:-0}" ${COMPILE:+--compile} ${ANNEAL:+--anneal} \
  --max-minutes "$DIT_MIN" --log-every 100 --save-every 100000 2>&1 | grep -v -i warn > $W/dit.log &
# Sharing the GPU with the decoder's convolutions slowed the DiT (run 1: 0.18 s/step at batch 64): DECODER=0 trains the DiT alone.
[ "${DECODER:-1}" = 1 ] && python3 tools/train/train_vae.py --data $D --out $W/vae-dec --init "$VAE" --decoder-only --frames 9 --batch 64 \
  --max-minutes "$DEC_MIN" --log-every 50 --save-every 100000 2>&1 | grep -v -i warn > $W/vae-dec.log &
wait
echo "[$(( $(date +%s) - T0 )) s] done"
for f in vae-full.log dit.log vae-dec.log; do [ -f $W/$f ] && { echo "== $f"; tail -6 $W/$f; }; done
[ -d $W/vae-dec/vae ] && cp -r $W/vae-dec/vae $OUT/vae
cp $W/dit/weights-*.safetensors $W/dit/ema-*.safetensors $OUT/dit/
tar cf $OUT/small.tar -C $W --exclude='*.safetensors' --exclude='*.pt' --exclude=pipeline \
  dit $(cd $W && ls -d vae-full vae-dec 2>/dev/null) $(cd $W && ls *.log)
ls -la $OUT $OUT/dit
