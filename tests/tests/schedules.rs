//! Noise schedules against diffusers 0.42.1's tables (tools/make_scheduler_fixtures.py):
//! DPM-Solver++ and UniPC with flow sigmas (timesteps identical, sigmas to 1 ulp) and flow-match Euler,
//! for several step counts and shifts.

use sana_video_core::samplers::{dpm_flow, flow_euler, unipc_flow};
use sana_video_tests::fixtures;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn schedules_match_diffusers() {
    let text = std::fs::read_to_string(fixtures().join("scheduler/tables.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for (name, f) in [("dpm_flow", dpm_flow as fn(usize, f64) -> _), ("flow_euler", flow_euler), ("unipc_flow", unipc_flow)] {
        for c in v[name].as_array().unwrap() {
            let (steps, shift) = (c["steps"].as_u64().unwrap() as usize, c["shift"].as_f64().unwrap());
            let s = f(steps, shift);
            let (want_s, want_t) = (floats(&c["sigmas"]), floats(&c["timesteps"]));
            assert_eq!(s.sigmas.len(), want_s.len(), "{name} {steps}/{shift}: sigma count");
            assert_eq!(s.timesteps.len(), want_t.len(), "{name} {steps}/{shift}: timestep count");
            for (i, (a, b)) in s.sigmas.iter().zip(&want_s).enumerate() {
                assert!((*a as f64 - b).abs() <= 1.2e-7 * b.abs().max(1e-3), "{name} {steps}/{shift}: sigma {i}: {a} vs {b}");
            }
            for (i, (a, b)) in s.timesteps.iter().zip(&want_t).enumerate() {
                if name != "flow_euler" {
                    assert_eq!(*a as f64, *b, "{name} {steps}/{shift}: timestep {i}");
                } else {
                    assert!((*a as f64 - b).abs() <= 1e-4, "{name} {steps}/{shift}: timestep {i}: {a} vs {b}");
                }
            }
        }
    }
}

/// DPM-Solver++ (2M, midpoint, flow) and flow-match Euler trajectories equal diffusers'
/// `scheduler.step` for a made-up model output `v = 0.5·x + c_i·e`, on every backend.
#[test]
fn dpm_solver_steps_match_diffusers() {
    use burn::tensor::{DType, Tensor};
    use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
    use sana_video_core::io::FsSource;
    use sana_video_core::samplers::FlowDpmSolver;
    let path = fixtures().join("scheduler/dpm_trajectories.safetensors").to_string_lossy().to_string();
    let w = Weights::open_files(&FsSource, &[path]).unwrap();
    for (kind, device) in sana_video_tests::backends() {
        for (key, steps, shift) in [("s10_shift8", 10, 8.0), ("s20_shift3", 20, 3.0), ("s2_shift8", 2, 8.0)] {
            let (x0, shape) = w.read_f32(&format!("{key}.x0")).unwrap();
            let (e, _) = w.read_f32(&format!("{key}.e")).unwrap();
            let (c, _) = w.read_f32(&format!("{key}.c")).unwrap();
            let (traj, _) = w.read_f32(&format!("{key}.trajectory")).unwrap();
            let mut x: Tensor<4> = tensor_from_f32(x0, shape.clone(), &device, DType::F32);
            let e: Tensor<4> = tensor_from_f32(e, shape.clone(), &device, DType::F32);
            let mut solver = FlowDpmSolver::<4>::new(steps, shift);
            let n: usize = shape.iter().product();
            for i in 0..steps {
                let v = x.clone() * 0.5 + e.clone() * c[i];
                x = solver.step(v, x).unwrap();
                let got = x.clone().into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = sana_video_tests::rel_l2(&got, &traj[i * n..(i + 1) * n]);
                assert!(rel <= 1e-5, "{key} step {i} on {}: rel L2 {rel:e}", sana_video_core::device::name(kind));
            }
            assert!(solver.step(x.clone(), x).is_err(), "stepping past the schedule must fail");

            // Flow-match Euler on the same made-up model.
            let (x0, _) = w.read_f32(&format!("{key}.x0")).unwrap();
            let (traj, _) = w.read_f32(&format!("{key}.euler_trajectory")).unwrap();
            let mut x: Tensor<4> = tensor_from_f32(x0, shape.clone(), &device, DType::F32);
            let mut euler = sana_video_core::samplers::FlowEuler::new(steps, shift);
            for i in 0..steps {
                let v = x.clone() * 0.5 + e.clone() * c[i];
                x = euler.step(v, x).unwrap();
                let got = x.clone().into_data().try_to_vec::<f32>().unwrap();
                let (rel, _) = sana_video_tests::rel_l2(&got, &traj[i * n..(i + 1) * n]);
                assert!(rel <= 1e-5, "{key} Euler step {i} on {}: rel L2 {rel:e}", sana_video_core::device::name(kind));
            }
        }
    }
}
