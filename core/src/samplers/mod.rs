//! Samplers (MODEL-SPEC §8): the noise schedules, identical to diffusers' (`schedules.rs`),
//! flow DPM-Solver++ 2M (`dpm.rs`, the default), flow-match Euler (`euler.rs`, the
//! image-to-video default of the official code), UniPC flow (`unipc.rs`), the seeded noise
//! generator (`noise.rs`) and the checkpoint's `scheduler/scheduler_config.json`.

pub mod dpm;
pub mod euler;
pub mod longlive;
pub mod noise;
pub mod schedules;
pub mod unipc;

use burn::tensor::Tensor;
use serde::Deserialize;

pub use dpm::FlowDpmSolver;
pub use euler::FlowEuler;
pub use schedules::{dpm_flow, flow_euler, unipc_flow, Schedule};
pub use unipc::FlowUniPc;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    /// `DPMSolverMultistepScheduler` (flow sigmas, 2M, midpoint).
    DpmSolver,
    /// `FlowMatchEulerDiscreteScheduler`.
    Euler,
    /// `UniPCMultistepScheduler` (flow sigmas, bh2).
    UniPc,
}

impl SamplerKind {
    pub const NAMES: &'static str = "dpm++ (flow DPM-Solver++ 2M), euler (flow-match Euler), unipc (UniPC flow)";

    pub fn parse(s: &str) -> Result<SamplerKind> {
        match s.to_ascii_lowercase().as_str() {
            "dpm++" | "dpm++2m" | "dpm" | "dpmsolver" | "flow_dpm-solver" => Ok(SamplerKind::DpmSolver),
            "euler" | "flow_euler" => Ok(SamplerKind::Euler),
            "unipc" => Ok(SamplerKind::UniPc),
            other => Err(Error::Input(format!("--sampler {other}: unknown sampler; expected {}", Self::NAMES))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::DpmSolver => "dpm++",
            SamplerKind::Euler => "euler",
            SamplerKind::UniPc => "unipc",
        }
    }
}

/// The fields of `scheduler_config.json` we honour; everything else that would change the
/// numbers is checked and refused by name.
#[derive(Deserialize, Default)]
struct RawScheduler {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    num_train_timesteps: Option<u64>,
    flow_shift: Option<f64>,
    shift: Option<f64>,
    use_flow_sigmas: Option<bool>,
    prediction_type: Option<String>,
    solver_order: Option<usize>,
    algorithm_type: Option<String>,
    solver_type: Option<String>,
    final_sigmas_type: Option<String>,
    euler_at_final: Option<bool>,
    lower_order_final: Option<bool>,
    use_karras_sigmas: Option<bool>,
    use_exponential_sigmas: Option<bool>,
    use_beta_sigmas: Option<bool>,
    use_dynamic_shifting: Option<bool>,
    thresholding: Option<bool>,
    shift_terminal: Option<f64>,
    invert_sigmas: Option<bool>,
    stochastic_sampling: Option<bool>,
    predict_x0: Option<bool>,
    disable_corrector: Option<Vec<usize>>,
    variance_type: Option<String>,
    use_lu_lambdas: Option<bool>,
}

/// Replaces the non-JSON number literals Python's `json` emits (`NaN`, `Infinity`,
/// `-Infinity`) outside strings with `null`.
fn python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let lit = ["-Infinity", "Infinity", "NaN"].into_iter().find(|l| rest.starts_with(l));
        match lit {
            Some(l) => {
                out.push_str("null");
                rest = &rest[l.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// A checkpoint's scheduler: its default sampler and shift.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub kind: SamplerKind,
    pub shift: f64,
    pub unipc_order: usize,
    pub disable_corrector: Vec<usize>,
}

impl SchedulerConfig {
    pub fn from_json(text: &str, path: &str) -> Result<SchedulerConfig> {
        // diffusers writes Python's float('-inf') as a bare `-Infinity` (e.g. lambda_min_clipped).
        let text = python_json(text);
        let raw: RawScheduler =
            serde_json::from_str(&text).map_err(|e| Error::config(path, format!("not a scheduler config: {e}")))?;
        let bad = |msg: String| Err(Error::config(path, msg));
        let class = raw.class_name.clone().unwrap_or_default();
        if raw.num_train_timesteps.unwrap_or(1000) != 1000 {
            return bad(format!("num_train_timesteps {} is not supported (1000)", raw.num_train_timesteps.unwrap_or(0)));
        }
        for (flag, name) in [
            (raw.use_karras_sigmas, "use_karras_sigmas"),
            (raw.use_exponential_sigmas, "use_exponential_sigmas"),
            (raw.use_beta_sigmas, "use_beta_sigmas"),
            (raw.use_dynamic_shifting, "use_dynamic_shifting"),
            (raw.thresholding, "thresholding"),
            (raw.invert_sigmas, "invert_sigmas"),
            (raw.stochastic_sampling, "stochastic_sampling"),
            (raw.euler_at_final, "euler_at_final"),
            (raw.use_lu_lambdas, "use_lu_lambdas"),
        ] {
            if flag == Some(true) {
                return bad(format!("{class}: `{name}: true` is not supported"));
            }
        }
        if raw.shift_terminal.is_some() {
            return bad(format!("{class}: `shift_terminal` is not supported"));
        }
        let flow_checks = |raw: &RawScheduler| -> Result<()> {
            if raw.use_flow_sigmas != Some(true) {
                return Err(Error::config(path, format!("{class}: only `use_flow_sigmas: true` (flow matching) is supported")));
            }
            if raw.prediction_type.as_deref() != Some("flow_prediction") {
                return Err(Error::config(
                    path,
                    format!("{class}: prediction_type {:?} is not supported (flow_prediction)", raw.prediction_type),
                ));
            }
            if let Some(f) = raw.final_sigmas_type.as_deref() {
                if f != "zero" {
                    return Err(Error::config(path, format!("{class}: final_sigmas_type {f:?} is not supported (zero)")));
                }
            }
            if raw.lower_order_final == Some(false) {
                return Err(Error::config(path, format!("{class}: `lower_order_final: false` is not supported")));
            }
            Ok(())
        };
        let kind = match class.as_str() {
            "DPMSolverMultistepScheduler" => {
                flow_checks(&raw)?;
                if raw.solver_order.unwrap_or(2) != 2 {
                    return bad(format!("{class}: solver_order {} is not supported (2)", raw.solver_order.unwrap_or(0)));
                }
                if let Some(a) = raw.algorithm_type.as_deref() {
                    if a != "dpmsolver++" {
                        return bad(format!("{class}: algorithm_type {a:?} is not supported (dpmsolver++)"));
                    }
                }
                if let Some(s) = raw.solver_type.as_deref() {
                    if s != "midpoint" {
                        return bad(format!("{class}: solver_type {s:?} is not supported (midpoint)"));
                    }
                }
                if raw.variance_type.is_some() {
                    return bad(format!("{class}: variance_type is not supported"));
                }
                SamplerKind::DpmSolver
            }
            "UniPCMultistepScheduler" => {
                flow_checks(&raw)?;
                if raw.predict_x0 == Some(false) {
                    return bad(format!("{class}: `predict_x0: false` is not supported"));
                }
                if let Some(s) = raw.solver_type.as_deref() {
                    if s != "bh2" {
                        return bad(format!("{class}: solver_type {s:?} is not supported (bh2)"));
                    }
                }
                SamplerKind::UniPc
            }
            "FlowMatchEulerDiscreteScheduler" => SamplerKind::Euler,
            other => {
                return bad(format!(
                    "scheduler class {other:?} is not supported (DPMSolverMultistepScheduler, \
                     FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)"
                ))
            }
        };
        let shift = match kind {
            SamplerKind::Euler => raw.shift.unwrap_or(1.0),
            _ => raw.flow_shift.unwrap_or(1.0),
        };
        if !(shift.is_finite() && shift > 0.0) {
            return bad(format!("{class}: shift {shift} must be positive"));
        }
        let unipc_order = if kind == SamplerKind::UniPc { raw.solver_order.unwrap_or(2) } else { 2 };
        if !(1..=2).contains(&unipc_order) {
            return bad(format!("{class}: solver_order {unipc_order} is not supported (1 or 2)"));
        }
        Ok(SchedulerConfig { kind, shift, unipc_order, disable_corrector: raw.disable_corrector.unwrap_or_default() })
    }
}

/// One of the samplers, stepping `[B, C, F, H, W]` latents (or a frame slice of them).
pub enum Sampler {
    Dpm(FlowDpmSolver<5>),
    Euler(FlowEuler),
    UniPc(FlowUniPc<5>),
}

impl Sampler {
    /// `kind` with the checkpoint's shift (a sampler other than the checkpoint's own uses
    /// the same shift, as SANA's converter wires them).
    pub fn new(kind: SamplerKind, steps: usize, cfg: &SchedulerConfig) -> Result<Sampler> {
        if steps == 0 {
            return Err(Error::Input("--steps must be at least 1".into()));
        }
        Ok(match kind {
            SamplerKind::DpmSolver => Sampler::Dpm(FlowDpmSolver::new(steps, cfg.shift)),
            SamplerKind::Euler => Sampler::Euler(FlowEuler::new(steps, cfg.shift)),
            SamplerKind::UniPc => {
                let (order, disable) = if cfg.kind == SamplerKind::UniPc {
                    (cfg.unipc_order, cfg.disable_corrector.clone())
                } else {
                    (2, Vec::new())
                };
                Sampler::UniPc(FlowUniPc::new(steps, cfg.shift, order, disable)?)
            }
        })
    }

    pub fn timesteps(&self) -> &[f32] {
        match self {
            Sampler::Dpm(s) => s.timesteps(),
            Sampler::Euler(s) => s.timesteps(),
            Sampler::UniPc(s) => s.timesteps(),
        }
    }

    pub fn sigmas(&self) -> &[f32] {
        match self {
            Sampler::Dpm(s) => &s.schedule.sigmas,
            Sampler::Euler(s) => &s.schedule.sigmas,
            Sampler::UniPc(s) => &s.schedule.sigmas,
        }
    }

    pub fn step(&mut self, velocity: Tensor<5>, sample: Tensor<5>) -> Result<Tensor<5>> {
        match self {
            Sampler::Dpm(s) => s.step(velocity, sample),
            Sampler::Euler(s) => s.step(velocity, sample),
            Sampler::UniPc(s) => s.step(velocity, sample),
        }
    }
}
