//! The record of a training pass that the backward pass reads back.

use std::any::Any;

use crate::{Error, Result};

/// A stack of per-layer caches: [`super::Bijection::train_forward`] pushes, and
/// [`super::Bijection::backward`] pops in reverse order.
#[derive(Default)]
pub struct Tape {
    stack: Vec<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tape({} entries)", self.stack.len())
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push<T: Any + Send>(&mut self, entry: T) {
        self.stack.push(Box::new(entry));
    }

    pub(crate) fn pop<T: Any>(&mut self) -> Result<T> {
        let entry = self.stack.pop().ok_or_else(|| Error::Unsupported("backward called without a matching train_forward".into()))?;
        entry.downcast::<T>().map(|b| *b).map_err(|_| Error::Unsupported("backward called in a different order than train_forward".into()))
    }
}
