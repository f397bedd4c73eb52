//! Distributions: the standard normal base and [`Flow`], a base pushed through a bijection.

mod flow;
mod normal;

pub use flow::{Flow, FlowMeta, MAX_ABS_VALUE};
pub use normal::StandardNormal;
