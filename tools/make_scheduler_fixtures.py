#!/usr/bin/env python3
"""Reference sigma / timestep tables of diffusers' schedulers as SANA-Video configures them
(MODEL-SPEC §8.3): DPMSolverMultistepScheduler with flow sigmas (the default sampler) and
FlowMatchEulerDiscreteScheduler, for several step counts and shifts.

Pinned: diffusers 0.42.1 (tools/requirements-fixtures.txt).

    python3 tools/make_scheduler_fixtures.py --out tests/fixtures/scheduler/tables.json
"""
import argparse
import json

from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

CASES = [(50, 8.0), (50, 7.0), (20, 3.0), (14, 8.0), (10, 8.0), (2, 8.0), (1, 8.0)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/scheduler/tables.json")
    args = ap.parse_args()
    out = {"dpm_flow": [], "flow_euler": []}
    for steps, shift in CASES:
        s = DPMSolverMultistepScheduler(
            num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
            solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
            final_sigmas_type="zero", euler_at_final=False)
        s.set_timesteps(steps)
        out["dpm_flow"].append(dict(steps=steps, shift=shift, sigmas=[float(v) for v in s.sigmas],
                                    timesteps=[int(v) for v in s.timesteps]))
        e = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        e.set_timesteps(steps)
        out["flow_euler"].append(dict(steps=steps, shift=shift, sigmas=[float(v) for v in e.sigmas],
                                      timesteps=[float(v) for v in e.timesteps]))
    json.dump(out, open(args.out, "w"), indent=1)
    print({k: len(v) for k, v in out.items()})


if __name__ == "__main__":
    main()
