//! Named tensors read from a model file, handed out to the layers that own them.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::{Error, Result};

/// The tensors of a model file, by name. Layers take theirs by name and expected length;
/// anything missing or of the wrong size is a [`Error::BadModel`] naming the file.
#[derive(Debug)]
pub struct TensorSource {
    path: PathBuf,
    tensors: HashMap<String, Vec<f32>>,
}

impl TensorSource {
    /// Tensors read from `path`.
    pub fn new(path: impl Into<PathBuf>, tensors: HashMap<String, Vec<f32>>) -> Self {
        Self { path: path.into(), tensors }
    }

    /// Removes and returns tensor `name`, which must hold `len` values.
    ///
    /// # Errors
    /// [`Error::BadModel`] if it is missing, has another length, or holds a non-finite value.
    pub fn take(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.tensors.remove(name).ok_or_else(|| self.error(&format!("tensor '{name}' is missing")))?;
        if t.len() != len {
            return Err(self.error(&format!("tensor '{name}' has {} values, the architecture needs {len}", t.len())));
        }
        if t.iter().any(|v| !v.is_finite()) {
            return Err(self.error(&format!("tensor '{name}' holds NaN or infinite values")));
        }
        Ok(t)
    }

    /// Names of tensors nobody took (a sign that the file does not match its configuration).
    pub fn leftover(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// A [`Error::BadModel`] about this file.
    pub fn error(&self, message: &str) -> Error {
        Error::BadModel { path: self.path.clone(), message: message.into() }
    }
}
