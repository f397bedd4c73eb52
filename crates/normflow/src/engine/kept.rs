//! A value derived from a network's weights (a transposed panel, a trace kernel) that passes
//! between parameter changes reuse: built on first use, forgotten when the weights change.

use std::sync::OnceLock;

/// A value built on first use and kept until [`Kept::clear`] (call it whenever the weights it
/// derives from change); `None` when the builder declines. A clone starts empty.
#[derive(Debug)]
pub(crate) struct Kept<T>(OnceLock<Option<T>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> Kept<T> {
    /// Forgets the value (the weights changed).
    pub(crate) fn clear(&mut self) {
        self.0 = OnceLock::new();
    }

    /// The value, built by `build` on first use.
    pub(crate) fn get_or_build(&self, build: impl FnOnce() -> Option<T>) -> Option<&T> {
        self.0.get_or_init(build).as_ref()
    }
}
