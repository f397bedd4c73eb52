//! The record of a training pass that the backward pass reads back.

use std::any::Any;

use crate::{Error, Result};

/// A stack of per-layer caches: [`super::Bijection::train_forward`] pushes, and
/// [`super::Bijection::backward`] pops in reverse order.
///
/// Popped entries keep their boxes for the next push of the same type, so a tape reused across
/// training steps stops allocating after the first.
#[derive(Default)]
pub struct Tape {
    stack: Vec<Box<dyn Any + Send + Sync>>,
    spare: Vec<Box<dyn Any + Send + Sync>>,
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

    /// Records `entry` (stored as `Option<T>` so that its box can be emptied and reused).
    pub(crate) fn push<T: Any + Send + Sync>(&mut self, entry: T) {
        let reuse = self.spare.iter().position(|b| b.is::<Option<T>>());
        let mut slot = match reuse {
            Some(i) => self.spare.swap_remove(i),
            None => Box::new(None::<T>),
        };
        if let Some(s) = slot.downcast_mut::<Option<T>>() {
            *s = Some(entry);
        }
        self.stack.push(slot);
    }

    /// Takes back the last entry, which must be a `T`.
    pub(crate) fn pop<T: Any>(&mut self) -> Result<T> {
        let mut slot = self.stack.pop().ok_or_else(|| Error::Unsupported("backward called without a matching train_forward".into()))?;
        let entry = slot.downcast_mut::<Option<T>>().and_then(Option::take);
        self.spare.push(slot);
        entry.ok_or_else(|| Error::Unsupported("backward called in a different order than train_forward".into()))
    }

    /// Drops every entry (after a failed pass), keeping the boxes.
    pub(crate) fn clear(&mut self) {
        while let Some(slot) = self.stack.pop() {
            self.spare.push(slot);
        }
    }
}
