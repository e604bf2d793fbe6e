#!/usr/bin/env python3
"""Reference sigma / timestep tables of diffusers' schedulers as SANA-Video configures them
(MODEL-SPEC §8.3): DPMSolverMultistepScheduler with flow sigmas (the default sampler) and
FlowMatchEulerDiscreteScheduler, for several step counts and shifts.

Pinned: diffusers 0.42.1 (tools/requirements-fixtures.txt).

    python3 tools/make_scheduler_fixtures.py --out tests/fixtures/scheduler/tables.json

Also writes dpm_trajectories.safetensors next to it: DPM-Solver++ step-by-step results
for a made-up model output, to check the solver's update rule.
"""
import argparse
import json
import os

from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

CASES = [(50, 8.0), (50, 7.0), (20, 3.0), (14, 8.0), (10, 8.0), (2, 8.0), (1, 8.0)]


def make_trajectories(path):
    """DPM-Solver++ (2M, midpoint, flow) and flow-match Euler trajectories:
    x_{i+1} = scheduler.step(v_i, t_i, x_i)
    with a made-up model v_i = 0.5·x_i + c_i·e (c_i and e stored), float32."""
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(7)
    tensors = {}
    meta = []
    for steps, shift in [(10, 8.0), (20, 3.0), (2, 8.0)]:
        s = DPMSolverMultistepScheduler(
            num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
            solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
            final_sigmas_type="zero", euler_at_final=False)
        s.set_timesteps(steps)
        x = torch.randn(2, 3, 4, 5, generator=g)
        e = torch.randn(2, 3, 4, 5, generator=g)
        c = torch.randn(steps, generator=g)
        key = f"s{steps}_shift{int(shift)}"
        tensors[f"{key}.x0"] = x.clone()
        tensors[f"{key}.e"] = e
        tensors[f"{key}.c"] = c
        traj = []
        for i, t in enumerate(s.timesteps):
            v = 0.5 * x + c[i] * e
            x = s.step(v, t, x).prev_sample
            traj.append(x.clone())
        tensors[f"{key}.trajectory"] = torch.stack(traj)
        meta.append(dict(key=key, steps=steps, shift=shift))
        # The same made-up model through flow-match Euler.
        eu = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        eu.set_timesteps(steps)
        x = tensors[f"{key}.x0"].clone()
        traj = []
        for i, t in enumerate(eu.timesteps):
            v = 0.5 * x + c[i] * e
            x = eu.step(v, t, x).prev_sample
            traj.append(x.clone())
        tensors[f"{key}.euler_trajectory"] = torch.stack(traj)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    print("trajectories:", [m["key"] for m in meta])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/scheduler/tables.json")
    args = ap.parse_args()
    out = {"dpm_flow": [], "flow_euler": [], "unipc_flow": []}
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
        u = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                    use_flow_sigmas=True, flow_shift=shift)
        u.set_timesteps(steps)
        out["unipc_flow"].append(dict(steps=steps, shift=shift, sigmas=[float(v) for v in u.sigmas],
                                      timesteps=[int(v) for v in u.timesteps]))
    json.dump(out, open(args.out, "w"), indent=1)
    print({k: len(v) for k, v in out.items()})
    make_trajectories(os.path.join(os.path.dirname(args.out), "dpm_trajectories.safetensors"))


if __name__ == "__main__":
    main()
