//! Masks for MADE (Germain et al. 2015, arXiv:1502.03509): a masked MLP whose output for
//! dimension `i` depends only on the inputs that come before `i` in a chosen order.

use serde::{Deserialize, Serialize};

/// How a MADE's hidden units are laid out by degree. Both give every degree the same number of
/// units, so the two networks are the same up to a relabelling of the hidden units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenDegrees {
    /// Unit `k` has the `k`-th degree of the cycle (1, 2, …, d−1, 1, 2, …), as in the MADE
    /// paper: every product is dense.
    Cyclic,
    /// The same degrees in ascending order, so that each unit sees a prefix of the previous
    /// layer: the masked products skip the zero blocks (about half the work).
    Sorted,
}

/// Degrees of a MADE's units: input dimension `i` has degree `order[i] + 1` (1..=d), and a unit
/// of degree `m` may see inputs of degree ≤ `m`; an output for a dimension of degree `D` sees
/// hidden units of degree < `D`. Context inputs are always visible.
#[derive(Clone, Debug, PartialEq)]
pub struct MadeDegrees {
    /// Degree of each data input.
    pub input: Vec<usize>,
    /// Degree of each unit of each hidden layer.
    pub hidden: Vec<Vec<usize>>,
    /// Context inputs (after the data inputs).
    pub context_dim: usize,
}

/// Degrees for `order` (position of each dimension), `context_dim` context inputs and hidden
/// sizes `hidden`, laid out as `layout` says.
///
/// Hidden units cycle through degrees 1..d-1; with a context they cycle through 0..d-1, and
/// degree-0 units see the context alone, so that the first dimension in the order still depends
/// on the context. With neither (d = 1, no context) every unit has degree 0 and sees nothing,
/// which is right for a first dimension.
pub fn made_degrees(order: &[usize], context_dim: usize, hidden: &[usize], layout: HiddenDegrees) -> MadeDegrees {
    let d = order.len();
    let hidden_deg = |k: usize| match (context_dim > 0, d > 1) {
        (true, _) => k % d,
        (false, true) => 1 + k % (d - 1),
        (false, false) => 0,
    };
    MadeDegrees {
        input: order.iter().map(|&o| o + 1).collect(),
        hidden: hidden
            .iter()
            .map(|&h| {
                let mut degrees: Vec<usize> = (0..h).map(hidden_deg).collect();
                if layout == HiddenDegrees::Sorted {
                    degrees.sort_unstable();
                }
                degrees
            })
            .collect(),
        context_dim,
    }
}

/// Weight masks (one per layer, `[out, in]` row-major, 1 = connected) for an MLP
/// `[dim + context_dim] → hidden… → outputs_per_dim · dim`, hidden degrees laid out as `layout`.
///
/// `order[i]` is the position (0-based) of input dimension `i` in the autoregressive order. The
/// output block `k` (of `outputs_per_dim`) holds one value per dimension: output `k·dim + i`
/// sees only inputs earlier than `i` in the order. Context inputs connect to every hidden unit.
pub fn made_masks(order: &[usize], context_dim: usize, hidden: &[usize], outputs_per_dim: usize, layout: HiddenDegrees) -> Vec<Vec<f32>> {
    let deg = made_degrees(order, context_dim, hidden, layout);
    let d = order.len();
    let mut masks = Vec::with_capacity(hidden.len() + 1);
    // None = a context input: always connected.
    let mut prev: Vec<Option<usize>> = deg.input.iter().map(|&g| Some(g)).chain(std::iter::repeat_n(None, context_dim)).collect();
    for layer in &deg.hidden {
        let mut m = vec![0.0; layer.len() * prev.len()];
        for (k, &dk) in layer.iter().enumerate() {
            for (j, pj) in prev.iter().enumerate() {
                if pj.is_none_or(|p| dk >= p) {
                    m[k * prev.len() + j] = 1.0;
                }
            }
        }
        masks.push(m);
        prev = layer.iter().map(|&g| Some(g)).collect();
    }
    let outs = outputs_per_dim * d;
    let mut m = vec![0.0; outs * prev.len()];
    for o in 0..outs {
        let di = deg.input[o % d];
        for (j, pj) in prev.iter().enumerate() {
            if pj.is_none_or(|p| di > p) {
                m[o * prev.len() + j] = 1.0;
            }
        }
    }
    masks.push(m);
    masks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_depends_only_on_earlier_inputs() {
        // Connectivity through the whole network: product of the 0/1 masks.
        let order = [2, 0, 1];
        let hidden = [5, 4];
        for layout in [HiddenDegrees::Cyclic, HiddenDegrees::Sorted] {
            let masks = made_masks(&order, 1, &hidden, 2, layout);
            let sizes = [4, 5, 4, 6];
            let mut reach: Vec<Vec<bool>> = (0..4).map(|i| (0..4).map(|j| i == j).collect()).collect();
            for (l, m) in masks.iter().enumerate() {
                let (fi, fo) = (sizes[l], sizes[l + 1]);
                reach = (0..fo).map(|o| (0..4).map(|inp| (0..fi).any(|k| m[o * fi + k] > 0.0 && reach[k][inp])).collect()).collect();
            }
            for o in 0..6 {
                let i = o % 3;
                for j in 0..3 {
                    let allowed = order[j] < order[i];
                    assert!(!reach[o][j] || allowed, "output {o} sees input {j}");
                }
            }
            // The context reaches every output, the first dimension's included.
            assert!((0..6).all(|o| reach[o][3]));
        }
    }

    #[test]
    fn sorted_layout_relabels_the_cyclic_one() {
        for (order, context) in [(vec![3, 0, 2, 1, 4], 0), (vec![1, 0, 2], 2)] {
            let hidden = [13, 7];
            let cyclic = made_degrees(&order, context, &hidden, HiddenDegrees::Cyclic);
            let sorted = made_degrees(&order, context, &hidden, HiddenDegrees::Sorted);
            for (c, s) in cyclic.hidden.iter().zip(&sorted.hidden) {
                let mut c = c.clone();
                c.sort_unstable();
                assert_eq!(&c, s);
                assert!(s.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
