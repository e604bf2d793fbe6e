//! Samplers (MODEL-SPEC §8). So far the noise schedules, identical to diffusers'
//! (`schedules.rs`); the solver steps and the pipelines arrive with the pipeline issue.

pub mod schedules;

pub use schedules::{dpm_flow, flow_euler, Schedule};
