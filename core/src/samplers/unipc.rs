//! UniPC flow (diffusers' `UniPCMultistepScheduler` with `use_flow_sigmas`,
//! `prediction_type="flow_prediction"`, `predict_x0`, `solver_type="bh2"`,
//! `lower_order_final`, `final_sigmas_type="zero"`; MODEL-SPEC §8.3): a predictor of order
//! ≤ 2 and a corrector that reuses the next model evaluation. Scalars are computed in f32
//! in diffusers' operation order so trajectories can be matched step for step.

use burn::tensor::Tensor;

use super::schedules::{unipc_flow, Schedule};
use crate::{Error, Result};

pub struct FlowUniPc<const D: usize> {
    pub schedule: Schedule,
    solver_order: usize,
    disable_corrector: Vec<usize>,
    step_index: usize,
    lower_order_nums: usize,
    /// The order the last predictor used (the next corrector uses the same).
    this_order: usize,
    /// Data predictions `x̂₀` of the last `solver_order` steps, newest last.
    model_outputs: Vec<Tensor<D>>,
    last_sample: Option<Tensor<D>>,
}

fn lambda(sigma: f32) -> f32 {
    (1.0 - sigma).ln() - sigma.ln()
}

/// `torch.linalg.solve` for 2×2 (LU with partial pivoting, as LAPACK's sgesv).
fn solve2(a: [[f32; 2]; 2], b: [f32; 2]) -> [f32; 2] {
    let (a, b) = if a[1][0].abs() > a[0][0].abs() { ([a[1], a[0]], [b[1], b[0]]) } else { (a, b) };
    let l = a[1][0] * (1.0 / a[0][0]);
    let u11 = a[1][1] - l * a[0][1];
    let y1 = b[1] - l * b[0];
    let x1 = y1 / u11;
    let x0 = (b[0] - a[0][1] * x1) / a[0][0];
    [x0, x1]
}

impl<const D: usize> FlowUniPc<D> {
    /// `solver_order` 1 or 2 (the released configs use 2).
    pub fn new(steps: usize, shift: f64, solver_order: usize, disable_corrector: Vec<usize>) -> Result<Self> {
        if !(1..=2).contains(&solver_order) {
            return Err(Error::Input(format!("UniPC solver_order {solver_order} is not supported (1 or 2)")));
        }
        Ok(FlowUniPc {
            schedule: unipc_flow(steps, shift),
            solver_order,
            disable_corrector,
            step_index: 0,
            lower_order_nums: 0,
            this_order: 1,
            model_outputs: Vec::new(),
            last_sample: None,
        })
    }

    pub fn timesteps(&self) -> &[f32] {
        &self.schedule.timesteps
    }

    /// `h`, `α_t`, `σ_t/σ_s`, `h·φ₁` (= B_h for bh2) between two sigmas.
    fn coefficients(&self, t: usize, s: usize) -> (f32, f32, f32, f32) {
        let sig = &self.schedule.sigmas;
        let (sigma_t, sigma_s) = (sig[t], sig[s]);
        let h = lambda(sigma_t) - lambda(sigma_s);
        let hh = -h;
        (h, 1.0 - sigma_t, sigma_t / sigma_s, hh.exp_m1())
    }

    pub fn step(&mut self, model_output: Tensor<D>, sample: Tensor<D>) -> Result<Tensor<D>> {
        let i = self.step_index;
        let n = self.schedule.timesteps.len();
        if i >= n {
            return Err(Error::Input(format!("the sampler has already taken all {n} steps")));
        }
        let sig = &self.schedule.sigmas;
        // Data prediction from the uncorrected sample.
        let m_t = sample.clone() - model_output * sig[i];

        // Corrector (UniC): refine the sample the previous predictor produced.
        let sample = match &self.last_sample {
            Some(last) if i > 0 && !self.disable_corrector.contains(&(i - 1)) => {
                let (h, alpha_t, ratio, phi1) = self.coefficients(i, i - 1);
                let b_h = phi1;
                let m0 = self.model_outputs.last().expect("a corrector follows a step").clone();
                let x_base = last.clone() * ratio - m0.clone() * (alpha_t * phi1);
                let d1_t = m_t.clone() - m0.clone();
                let corr = if self.this_order == 1 {
                    d1_t * 0.5
                } else {
                    let hh = -h;
                    let m1 = self.model_outputs[self.model_outputs.len() - 2].clone();
                    let rk = (lambda(sig[i - 2]) - lambda(sig[i - 1])) / h;
                    let d1 = (m1 - m0) * (1.0 / rk);
                    let mut h_phi_k = phi1 / hh - 1.0;
                    let b1 = h_phi_k * 1.0 / b_h;
                    h_phi_k = h_phi_k / hh - 1.0 / 2.0;
                    let b2 = h_phi_k * 2.0 / b_h;
                    let rhos = solve2([[1.0, 1.0], [rk, 1.0]], [b1, b2]);
                    d1 * rhos[0] + d1_t * rhos[1]
                };
                x_base - corr * (alpha_t * b_h)
            }
            _ => sample,
        };

        self.model_outputs.push(m_t);
        if self.model_outputs.len() > self.solver_order {
            self.model_outputs.remove(0);
        }
        let order = self.solver_order.min(n - i).min(self.lower_order_nums + 1);
        self.this_order = order;
        self.last_sample = Some(sample.clone());

        // Predictor (UniP).
        let (h, alpha_t, ratio, phi1) = self.coefficients(i + 1, i);
        let m0 = self.model_outputs.last().expect("just pushed").clone();
        let x_base = sample * ratio - m0.clone() * (alpha_t * phi1);
        let x = if order == 2 {
            let m1 = self.model_outputs[self.model_outputs.len() - 2].clone();
            let rk = (lambda(sig[i - 1]) - lambda(sig[i])) / h;
            let d1 = (m1 - m0) * (1.0 / rk);
            x_base - (d1 * 0.5) * (alpha_t * phi1)
        } else {
            x_base
        };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.step_index += 1;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn solve2_matches_cramer() {
        for (a, b) in [([[1.0f32, 1.0], [-0.7, 1.0]], [0.3f32, 0.1]), ([[1.0, 1.0], [-2.5, 1.0]], [0.4, -0.2])] {
            let x = super::solve2(a, b);
            let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
            let x0 = (b[0] * a[1][1] - a[0][1] * b[1]) / det;
            let x1 = (a[0][0] * b[1] - a[1][0] * b[0]) / det;
            assert!((x[0] - x0).abs() < 1e-6 && (x[1] - x1).abs() < 1e-6, "{x:?} vs {x0} {x1}");
        }
    }
}
