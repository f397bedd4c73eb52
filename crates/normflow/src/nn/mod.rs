//! Conditioners: the networks that produce a transformer's parameters.

mod conditioner;
mod made;
mod mlp;
mod residual;

pub use conditioner::{Conditioner, ConditionerCache};
pub use made::{made_degrees, made_masks, MadeDegrees};
pub use mlp::{Mlp, MlpCache};
pub use residual::{ResidualCache, ResidualMlp};
