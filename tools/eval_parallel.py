#!/usr/bin/env python3
"""Runs `sana-video evaluate` over many CPU cores: the prompts are split into shards, each
shard is one process (one thread each: the built-in model is too small for burn-flex's
thread pool to pay), and the per-clip reports are merged into one summary computed the way
`sana-video evaluate` computes its own (core/src/eval: colour = found / objects, motion =
moving as asked / found, consistency averaged over found objects).

    python3 tools/eval_parallel.py --bin target/release/sana-video --prompts tools/dataset/heldout_prompts.txt \
        --seeds 1,2,3 --jobs 14 --out runs/heldout -- --steps 20 --cfg-scale 6

Everything after `--` goes to `sana-video evaluate` unchanged. Writes OUT/report.json (the
merged report, same shape as `evaluate --report`) and prints the summary as one JSON line.
Standard library only.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def read_prompts(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", required=True)
    ap.add_argument("extra", nargs="*", help="after --: flags for sana-video evaluate")
    a = ap.parse_args()
    prompts = read_prompts(a.prompts)
    seeds = [s.strip() for s in a.seeds.split(",") if s.strip()]
    os.makedirs(a.out, exist_ok=True)
    # One shard per (prompt block, seed), about two per worker so stragglers even out.
    units = [(p, s) for s in seeds for p in range(len(prompts))]
    n_shards = max(1, min(len(units), 2 * a.jobs))
    shards = [units[i::n_shards] for i in range(n_shards)]
    env = dict(os.environ, RAYON_NUM_THREADS="1")

    def run(k):
        by_seed = {}
        for p, s in shards[k]:
            by_seed.setdefault(s, []).append(prompts[p])
        reports = []
        for s, ps in by_seed.items():
            pf = os.path.join(a.out, f"shard{k}_seed{s}.txt")
            rf = os.path.join(a.out, f"shard{k}_seed{s}.json")
            with open(pf, "w") as f:
                f.write("\n".join(ps) + "\n")
            cmd = [a.bin, "evaluate", "--backend", "cpu", "--prompts", pf, "--seeds", s, "--report", rf, "--quiet", *a.extra]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"shard {k} seed {s} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
            reports.append(json.load(open(rf)))
        return reports

    t0 = time.time()
    with ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(run, range(n_shards)))
    clips = [c for rs in results for r in rs for c in r["clips"]]
    first = results[0][0]["summary"]
    # Report order: as `evaluate` itself would list them (prompt, then seed).
    order = {p: i for i, p in enumerate(prompts)}
    clips.sort(key=lambda c: (order[c["prompt"]], int(c["seed"])))
    objs = [o for c in clips for o in c["objects"]]
    found = [o for o in objs if o["found"]]
    summary = {k: v for k, v in first.items() if k not in ("seconds", "clips", "prompts", "seeds", "windows")}
    summary.update({
        "clips": len(clips), "prompts": len(prompts), "seeds": [int(s) for s in seeds], "objects": len(objs),
        "found": len(found), "moving": sum(1 for o in objs if o["motion_ok"] is True),
        "colour_accuracy": len(found) / max(1, len(objs)),
        "motion_accuracy": sum(1 for o in objs if o["motion_ok"] is True) / max(1, len(found)),
        "consistency": sum(o["consistency"] for o in found) / max(1, len(found)),
        "wall_seconds": round(time.time() - t0, 1), "jobs": a.jobs, "evaluate_flags": a.extra,
    })
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump({"summary": summary, "clips": clips}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
