//! Samplers (MODEL-SPEC §8): the noise schedules, identical to diffusers' (`schedules.rs`),
//! the default flow DPM-Solver++ update (`dpm.rs`) and flow-match Euler (`euler.rs`).
//! UniPC and the pipelines arrive with the pipeline issue.

pub mod dpm;
pub mod euler;
pub mod schedules;

pub use dpm::FlowDpmSolver;
pub use euler::FlowEuler;
pub use schedules::{dpm_flow, flow_euler, Schedule};
