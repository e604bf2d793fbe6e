//! Samplers (MODEL-SPEC §8): the noise schedules, identical to diffusers' (`schedules.rs`),
//! and the default flow DPM-Solver++ update (`dpm.rs`). Euler and UniPC steps and the
//! pipelines arrive with the pipeline issue.

pub mod dpm;
pub mod schedules;

pub use dpm::FlowDpmSolver;
pub use schedules::{dpm_flow, flow_euler, Schedule};
