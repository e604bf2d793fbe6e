//! Noise schedules against diffusers 0.42.1's tables (tools/make_scheduler_fixtures.py):
//! DPM-Solver++ with flow sigmas (timesteps identical, sigmas to 1 ulp) and flow-match Euler,
//! for several step counts and shifts.

use sana_video_core::samplers::{dpm_flow, flow_euler};
use sana_video_tests::fixtures;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn schedules_match_diffusers() {
    let text = std::fs::read_to_string(fixtures().join("scheduler/tables.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for (name, f) in [("dpm_flow", dpm_flow as fn(usize, f64) -> _), ("flow_euler", flow_euler)] {
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
                if name == "dpm_flow" {
                    assert_eq!(*a as f64, *b, "{name} {steps}/{shift}: timestep {i}");
                } else {
                    assert!((*a as f64 - b).abs() <= 1e-4, "{name} {steps}/{shift}: timestep {i}: {a} vs {b}");
                }
            }
        }
    }
}
