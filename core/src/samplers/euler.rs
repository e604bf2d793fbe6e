//! Flow-match Euler, diffusers' `FlowMatchEulerDiscreteScheduler` (the official
//! image-to-video default): `x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i`, in f32.

use burn::tensor::Tensor;

use super::schedules::{flow_euler, Schedule};
use crate::{Error, Result};

pub struct FlowEuler {
    pub schedule: Schedule,
    step_index: usize,
}

impl FlowEuler {
    pub fn new(steps: usize, shift: f64) -> Self {
        FlowEuler { schedule: flow_euler(steps, shift), step_index: 0 }
    }

    pub fn timesteps(&self) -> &[f32] {
        &self.schedule.timesteps
    }

    pub fn step<const D: usize>(&mut self, model_output: Tensor<D>, sample: Tensor<D>) -> Result<Tensor<D>> {
        let i = self.step_index;
        let n = self.schedule.timesteps.len();
        if i >= n {
            return Err(Error::Input(format!("the sampler has already taken all {n} steps")));
        }
        let dt = self.schedule.sigmas[i + 1] - self.schedule.sigmas[i];
        self.step_index += 1;
        Ok(sample + model_output * dt)
    }
}
