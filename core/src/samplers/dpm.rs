//! Flow DPM-Solver++ (2M, midpoint), diffusers' `DPMSolverMultistepScheduler` with
//! `use_flow_sigmas`, `prediction_type="flow_prediction"`, `solver_order=2`,
//! `lower_order_final`, `final_sigmas_type="zero"` (MODEL-SPEC §8.3): the default T2V
//! sampler. Coefficients are computed in f32 as the reference computes them.

use burn::tensor::Tensor;

use super::schedules::{dpm_flow, Schedule};
use crate::{Error, Result};

pub struct FlowDpmSolver<const D: usize> {
    pub schedule: Schedule,
    step_index: usize,
    /// The previous step's data prediction `x̂₀` (for the second-order update).
    previous: Option<Tensor<D>>,
}

/// `λ = ln α − ln σ` with `α = 1 − σ` (flow matching); `+∞` at σ = 0.
fn lambda(sigma: f32) -> f32 {
    (1.0 - sigma).ln() - sigma.ln()
}

impl<const D: usize> FlowDpmSolver<D> {
    pub fn new(steps: usize, shift: f64) -> Self {
        FlowDpmSolver { schedule: dpm_flow(steps, shift), step_index: 0, previous: None }
    }

    /// Timesteps to feed the network, one per step.
    pub fn timesteps(&self) -> &[f32] {
        &self.schedule.timesteps
    }

    /// One update from the velocity `model_output` at the current step; returns `x_{i+1}`.
    pub fn step(&mut self, model_output: Tensor<D>, sample: Tensor<D>) -> Result<Tensor<D>> {
        let i = self.step_index;
        let n = self.schedule.timesteps.len();
        if i >= n {
            return Err(Error::Input(format!("the sampler has already taken all {n} steps")));
        }
        let s = &self.schedule.sigmas;
        let (sigma_s, sigma_t) = (s[i], s[i + 1]);
        // Data prediction x̂₀ = x − σ·v.
        let m = sample.clone() - model_output * sigma_s;
        let alpha_t = 1.0 - sigma_t;
        let h = lambda(sigma_t) - lambda(sigma_s);
        let phi = alpha_t * ((-h).exp() - 1.0);
        let ratio = sigma_t / sigma_s;
        // First order on the first step and on the last (σ_N = 0 forces it).
        let x = match &self.previous {
            Some(prev) if i + 1 < n => {
                let h0 = lambda(sigma_s) - lambda(s[i - 1]);
                let r0 = h0 / h;
                let d1 = (m.clone() - prev.clone()) * (1.0 / r0);
                sample * ratio - m.clone() * phi - d1 * (0.5 * phi)
            }
            _ => sample * ratio - m.clone() * phi,
        };
        self.previous = Some(m);
        self.step_index += 1;
        Ok(x)
    }
}
