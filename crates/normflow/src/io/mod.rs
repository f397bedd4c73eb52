//! Persistence: model files (JSON configuration + safetensors weights in one file) and atomic
//! writes.

mod atomic;
mod model_file;
mod tensor_source;

pub use atomic::write_atomic;
pub use model_file::{flow_from_bytes, flow_to_bytes, load_flow, save_flow, FORMAT_VERSION};
pub(crate) use model_file::{load_flow_with, save_flow_with, CHECKPOINT_PREFIX};
pub use tensor_source::TensorSource;
