//! Elementwise transformers evaluated [`LANES`] elements at a time (structure of arrays: every
//! quantity an array with one value per element, so the compiler turns each step into vector
//! instructions). This driver gathers elements and their parameters from the rows into lanes,
//! lets a [`LaneKernel`] evaluate them, and scatters the outputs, log-dets and records back.

use super::Direction;
use crate::engine::fastmath::LANES;

/// One value per element of a group.
pub(crate) type Lanes = [f32; LANES];

/// Where a pass's elements lie: row `r`'s `n` transformed elements are
/// `values[r·stride + offset ..][..n]`, and its `params_per_dim · n` parameters are the
/// contiguous row `r` of the parameter matrix (parameter `p` of element `i` at `p·n + i`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowLayout {
    /// Distance between rows of the values.
    pub stride: usize,
    /// Column of the first transformed element.
    pub offset: usize,
    /// Transformed elements per row.
    pub n: usize,
}

/// A transformer's forward and inverse maps on one group of [`LANES`] elements.
pub(crate) trait LaneKernel {
    /// Where the driver gathers the group's parameters: one [`Lanes`] per parameter.
    fn theta_mut(&mut self) -> &mut [Lanes];
    /// Values recorded per element for the backward pass (0: none).
    fn record_len(&self) -> usize;
    /// Maps the group `x` with the gathered parameters: outputs and log-dets.
    fn eval(&mut self, direction: Direction, x: &Lanes) -> (Lanes, Lanes);
    /// Writes lane `l` of the group last evaluated into `rec` (`record_len` values).
    fn save(&self, rec: &mut [f32], l: usize);
}

/// The arguments of [`apply_rows`], passed on as one.
type Args<'a> = (Direction, RowLayout, &'a [f32], &'a [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32]);

/// Maps the elements of `ld.len()` rows laid out as `layout` from `input` into `out` (entries
/// outside the layout are left alone) with parameters `theta`, adding each row's log-det into
/// `ld`. `record` (rows × `n · record_len`, or empty) receives what the backward pass reuses.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_rows<K: LaneKernel>(
    kernel: &mut K,
    direction: Direction,
    layout: RowLayout,
    input: &[f32],
    theta: &[f32],
    out: &mut [f32],
    record: &mut [f32],
    ld: &mut [f32],
) {
    let args = (direction, layout, input, theta, out, record, ld);
    match layout.n {
        n if n % 8 == 0 => run::<K, 8>(kernel, args),
        n if n % 4 == 0 => run::<K, 4>(kernel, args),
        n if n % 2 == 0 => run::<K, 2>(kernel, args),
        _ => run::<K, 1>(kernel, args),
    }
}

/// [`apply_rows`] moving elements in runs of `G` (which divides both the row length and
/// [`LANES`], so a run never crosses a row): fixed-length copies instead of one bounds-checked
/// load per element and parameter.
fn run<K: LaneKernel, const G: usize>(kernel: &mut K, (direction, layout, input, theta, out, record, ld): Args<'_>) {
    let RowLayout { stride, offset, n } = layout;
    let per = kernel.theta_mut().len();
    let total = ld.len() * n;
    let rec_len = kernel.record_len();
    let runs = LANES / G;
    // Row and index of each run's first element.
    let mut at = [(0usize, 0usize); LANES];
    // The next element to gather.
    let (mut r, mut i) = (0, 0);
    for start in (0..total).step_by(LANES) {
        let active = runs.min((total - start) / G);
        let mut x = [0.0f32; LANES];
        for run in 0..runs {
            // Runs past the end repeat the first run's parameters (with x = 0), computed and
            // discarded.
            let (rr, ii) = if run < active { (r, i) } else { at[0] };
            at[run] = (rr, ii);
            let first = rr * per * n + ii;
            if run < active {
                x[run * G..(run + 1) * G].copy_from_slice(&input[rr * stride + offset + ii..][..G]);
                i += G;
                if i == n {
                    (r, i) = (r + 1, 0);
                }
            }
            for (p, lanes) in kernel.theta_mut().iter_mut().enumerate() {
                lanes[run * G..(run + 1) * G].copy_from_slice(&theta[first + p * n..][..G]);
            }
        }
        let (y, lds) = kernel.eval(direction, &x);
        for (run, &(r, i)) in at.iter().enumerate().take(active) {
            let lanes = run * G..(run + 1) * G;
            out[r * stride + offset + i..][..G].copy_from_slice(&y[lanes.clone()]);
            ld[r] += lds[lanes.clone()].iter().sum::<f32>();
            if !record.is_empty() {
                for (l, e) in lanes.zip(i..) {
                    kernel.save(&mut record[(r * n + e) * rec_len..][..rec_len], l);
                }
            }
        }
    }
}
