//! The two directions of a bijection, which every kernel of a map is written for.

/// Which way a bijection is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Generative: base z → data x.
    Forward,
    /// Inference: data x → base z.
    Inverse,
}

impl Direction {
    /// The other direction.
    pub fn flip(self) -> Self {
        match self {
            Direction::Forward => Direction::Inverse,
            Direction::Inverse => Direction::Forward,
        }
    }
}
