#!/usr/bin/env bash
# Issue 6 on the GPU machine's CPU cores (16 there, 2 here): the built-in model's sampler
# settings measured on the VALIDATION prompts (tools/dataset/validation_prompts.txt), the
# best chosen by a fixed rule (most objects found, then most moving as asked, then the
# earlier setting; the default is listed first), then that one measured on the HELD-OUT
# prompts over seeds 1,2,3. CPU backend, one thread a process (tools/eval_parallel.py).
# Carry .devcarry/sana-video.xz. Stages: EVAL_STAGES ("val heldout"); EVAL_SETTINGS
# ("name:flags;..."), EVAL_VAL_SEEDS (1), EVAL_HELDOUT (a setting's flags: skips the choice).
set -uo pipefail
source benches/device_unpack.sh
JOBS=${EVAL_JOBS:-$(nproc)}
STAGES=${EVAL_STAGES:-val heldout}
SETTINGS=${EVAL_SETTINGS:-"default:--steps 20 --cfg-scale 6;steps30:--steps 30 --cfg-scale 6;cfg5:--steps 20 --cfg-scale 5;cfg7:--steps 20 --cfg-scale 7;unipc:--steps 20 --cfg-scale 6 --sampler unipc"}
lscpu | grep -E 'Model name|^CPU\(s\)' | tee $OUT/cpu.txt
if [[ $STAGES == *val* ]]; then
  IFS=';' read -ra LIST <<< "$SETTINGS"
  DEADLINE=$(( $(date +%s) + ${EVAL_VAL_BUDGET:-400} ))
  for s in "${LIST[@]}"; do
    name=${s%%:*}; flags=${s#*:}
    LEFT=$(( DEADLINE - $(date +%s) ))
    [ $LEFT -gt 30 ] || { echo "== validation: $name skipped (time budget spent)"; continue; }
    echo "== validation: $name ($flags)"
    timeout $LEFT python3 tools/eval_parallel.py --bin $B/sana-video --prompts tools/dataset/validation_prompts.txt \
      --seeds ${EVAL_VAL_SEEDS:-1} --jobs $JOBS --out /tmp/eval/val-$name -- $flags \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['setting']='$name'; print(json.dumps(d))" | tee -a $OUT/validation.jsonl
    pkill -f "sana-video evaluate" || true
    cp /tmp/eval/val-$name/report.json $OUT/validation-$name.json 2>/dev/null
  done
  python3 - "$OUT/validation.jsonl" > $OUT/choice.txt <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for i, r in enumerate(rows):
    print(f"{r['setting']}: colour {r['found']}/{r['objects']} ({r['colour_accuracy']:.3f}), motion {r['moving']}/{r['found']} ({r['motion_accuracy']:.3f}), {r['wall_seconds']} s")
best = max(range(len(rows)), key=lambda i: (rows[i]['found'], rows[i]['moving'], -i))
print("chosen:", rows[best]['setting'], " ".join(rows[best]['evaluate_flags']))
PY
  cat $OUT/choice.txt
fi
if [[ $STAGES == *heldout* ]]; then
  FLAGS=${EVAL_HELDOUT:-$(sed -n 's/^chosen: [^ ]* //p' $OUT/choice.txt 2>/dev/null)}
  echo "== held-out, seeds 1,2,3: $FLAGS"
  python3 tools/eval_parallel.py --bin $B/sana-video --prompts tools/dataset/heldout_prompts.txt \
    --seeds 1,2,3 --jobs $JOBS --out /tmp/eval/heldout -- $FLAGS | tee $OUT/heldout.json
  cp /tmp/eval/heldout/report.json $OUT/heldout-report.json
fi
