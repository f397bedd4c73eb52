//! Conditioners: the networks that produce a transformer's parameters.

mod made;
mod mlp;

pub use made::{made_degrees, made_masks, MadeDegrees};
pub use mlp::{Mlp, MlpCache};
