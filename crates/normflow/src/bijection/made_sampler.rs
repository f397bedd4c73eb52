//! The sequential (sampling) pass of a MADE-conditioned autoregressive layer, computing every
//! hidden unit exactly once and multiplying only by the weights its mask lets through.
//!
//! A hidden unit of degree `m` depends only on context inputs and on the dimensions at order
//! positions `< m`, so it is final as soon as those are. Step `p` computes, layer by layer, the
//! units of degree `p`, then the transformer parameters of the dimension at position `p`, and
//! maps that dimension. Inputs and hidden units are kept sorted by degree (context first, then
//! dimensions by position), so the inputs a unit of degree `m` may see are a prefix of its
//! layer's input columns: each step multiplies by that prefix only, about half the products of
//! full passes, and gives the same result as `dim` full passes (masked weights are zero).

use super::{Direction, Transformer};
use crate::engine::lanes::RowLayout;
use crate::engine::{matmul_a_bt_strided, Matrix};
use crate::nn::{made_degrees, HiddenDegrees, Mlp};

/// Units of one degree in one layer: where their columns start in the layer's sorted
/// activations, and their weights (rows: units; columns: the visible prefix of the previous
/// layer's sorted columns) and biases.
struct Group {
    start: usize,
    visible: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// The gathered weights of one MADE for sequential passes.
pub(crate) struct MadeSampler {
    dim: usize,
    context_dim: usize,
    /// Position in the order of each dimension.
    order: Vec<usize>,
    /// The dimension at each position (the inverse of `order`).
    by_position: Vec<usize>,
    /// Width of each hidden layer.
    widths: Vec<usize>,
    /// Per hidden layer, per degree `0..dim`: the group of units.
    groups: Vec<Vec<Group>>,
    /// Per order position: the output rows (transformer parameters) of that dimension, over the
    /// visible prefix of the last hidden layer's sorted units, and their biases.
    outputs: Vec<Group>,
}

/// Unit indices of a layer sorted by degree (stable), and for each degree `0..=dim` the number
/// of units of smaller degree.
fn sort_by_degree(degrees: &[usize], dim: usize) -> (Vec<usize>, Vec<usize>) {
    let mut sorted: Vec<usize> = (0..degrees.len()).collect();
    sorted.sort_by_key(|&k| degrees[k]);
    let starts = (0..=dim + 1).map(|m| degrees.iter().filter(|&&g| g < m).count()).collect();
    (sorted, starts)
}

impl MadeSampler {
    /// Gathers the weights of `net`, a MADE over `order` (position of each dimension) with
    /// `context_dim` context inputs, `per_dim` outputs per dimension (block-major) and hidden
    /// degrees laid out as `layout`.
    pub(crate) fn new(net: &Mlp, order: &[usize], context_dim: usize, per_dim: usize, layout: HiddenDegrees) -> Self {
        let (d, c) = (order.len(), context_dim);
        let widths: Vec<usize> = net.sizes()[1..net.sizes().len() - 1].to_vec();
        let degrees = made_degrees(order, c, &widths, layout);
        // The network's input columns in sorted order: context (columns d..d+c), then the data
        // dimensions by position.
        let mut by_position = vec![0; d];
        for (i, &p) in order.iter().enumerate() {
            by_position[p] = i;
        }
        let mut prev_columns: Vec<usize> = (d..d + c).chain(by_position.iter().copied()).collect();
        // Visible prefix of the previous layer for a unit of degree m.
        let mut prev_visible: Vec<usize> = (0..=d).map(|m| c + m.min(d)).collect();
        let mut groups = Vec::with_capacity(widths.len());
        for (l, layer_degrees) in degrees.hidden.iter().enumerate() {
            let (w, b) = net.layer_params(l);
            let fan_in = w.len() / b.len();
            let (sorted, starts) = sort_by_degree(layer_degrees, d);
            let layer_groups = (0..d.max(1))
                .map(|m| {
                    let units = &sorted[starts[m]..starts[m + 1]];
                    let visible = prev_visible[m];
                    let weights = units.iter().flat_map(|&k| prev_columns[..visible].iter().map(move |&j| w[k * fan_in + j])).collect();
                    Group { start: starts[m], visible, weights, bias: units.iter().map(|&k| b[k]).collect() }
                })
                .collect();
            groups.push(layer_groups);
            prev_columns = sorted;
            // A unit of the next layer with degree m sees units of degree ≤ m.
            prev_visible = (0..=d).map(|m| starts[(m + 1).min(d + 1)]).collect();
        }
        let (w_out, b_out) = net.layer_params(widths.len());
        let last = *widths.last().expect("a MADE has a hidden layer");
        let outputs = (0..d)
            .map(|p| {
                let i = by_position[p];
                // The output of a dimension of degree p + 1 sees hidden units of degree ≤ p.
                let visible = prev_visible[p];
                let rows: Vec<usize> = (0..per_dim).map(|q| q * d + i).collect();
                let weights = rows.iter().flat_map(|&o| prev_columns[..visible].iter().map(move |&j| w_out[o * last + j])).collect();
                Group { start: 0, visible, weights, bias: rows.iter().map(|&o| b_out[o]).collect() }
            })
            .collect();
        Self { dim: d, context_dim: c, order: order.to_vec(), by_position, widths, groups, outputs }
    }

    /// `x = τ(z; θ(x_<))` dimension by dimension, and the log-det per row.
    pub(crate) fn run(&self, z: &Matrix, context: Option<&Matrix>, transformer: Transformer) -> (Matrix, Vec<f32>) {
        let (d, c, rows) = (self.dim, self.context_dim, z.rows());
        // Sorted inputs: context, then the dimensions by position as they become known.
        let mut input = Matrix::zeros(rows, c + d);
        if let Some(ctx) = context.filter(|_| c > 0) {
            for r in 0..rows {
                input.row_mut(r)[..c].copy_from_slice(ctx.row(r));
            }
        }
        let mut acts: Vec<Matrix> = self.widths.iter().map(|&h| Matrix::zeros(rows, h)).collect();
        let mut ld = vec![0.0; rows];
        let mut out = Vec::new();
        let mut run = transformer.runner();
        // This step's dimension of every row, before and after the transformer.
        let (mut zi, mut xi) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let one = RowLayout { stride: 1, offset: 0, n: 1 };
        for p in 0..d {
            for l in 0..self.widths.len() {
                let g = &self.groups[l][p];
                let n = g.bias.len();
                if n == 0 {
                    continue;
                }
                let (prev, acts_l) = if l == 0 {
                    (&input, &mut acts[0])
                } else {
                    let (before, after) = acts.split_at_mut(l);
                    (&before[l - 1], &mut after[0])
                };
                product(&mut out, prev, g, rows);
                for r in 0..rows {
                    let dst = &mut acts_l.row_mut(r)[g.start..g.start + n];
                    dst.iter_mut().zip(&out[r * n..(r + 1) * n]).zip(&g.bias).for_each(|((a, v), b)| *a = (v + b).max(0.0));
                }
            }
            let g = &self.outputs[p];
            let last = acts.last().expect("a MADE has a hidden layer");
            product(&mut out, last, g, rows);
            let (i, per_dim) = (self.by_position[p], g.bias.len());
            for params in out.chunks_exact_mut(per_dim) {
                params.iter_mut().zip(&g.bias).for_each(|(v, b)| *v += b);
            }
            zi.clear();
            zi.extend((0..rows).map(|r| z.get(r, i)));
            xi.resize(rows, 0.0);
            run.apply_rows(Direction::Forward, one, &zi, &out[..rows * per_dim], &mut xi, &mut [], &mut ld);
            for (r, &v) in xi.iter().enumerate() {
                input.set(r, c + p, v);
            }
        }
        let mut x = Matrix::zeros(rows, d);
        for r in 0..rows {
            let (src, dst) = (&input.row(r)[c..], x.row_mut(r));
            for (i, &p) in self.order.iter().enumerate() {
                dst[i] = src[p];
            }
        }
        (x, ld)
    }
}

/// `out = prev[:, ..visible] · groupᵀ`, `rows × units`, into a reused buffer; the callers add
/// the biases in the pass that reads it (filling the buffer with bias rows first cost a
/// `memcpy` call per row: 8% of a MAF S sampling run).
fn product(out: &mut Vec<f32>, prev: &Matrix, g: &Group, rows: usize) {
    let n = g.bias.len();
    out.resize(rows * n, 0.0);
    matmul_a_bt_strided(out, prev.as_slice(), prev.cols(), &g.weights, rows, n, g.visible, false);
}
