//! Conditioners: the networks that produce a transformer's parameters.

mod checkerboard_net;
mod conditioner;
mod conv_net;
mod layer_mask;
mod made;
mod mlp;
mod residual;
mod trace_kernel;
mod vector_field;
mod wave_conditioner;
mod wavenet;

pub use checkerboard_net::{checkerboard_order, CheckerboardNet};
pub use conditioner::{Conditioner, ConditionerCache};
pub use conv_net::{ConvNet, ConvNetCache};
#[cfg(feature = "bench")]
pub use layer_mask::masked_product_macs;
pub use made::{made_degrees, made_masks, HiddenDegrees, MadeDegrees};
pub use mlp::{Mlp, MlpCache};
pub use residual::{ResidualCache, ResidualMlp};
pub use vector_field::{FieldCache, TimeFeatures, VectorField};
pub use wave_conditioner::WaveConditioner;
pub use wavenet::{WaveNet, WaveNetCache, WaveNetShape};
