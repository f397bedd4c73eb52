//! A masked layer's weight mask and the tiles its products use: the blocks of weights a mask
//! fixes at zero are skipped rather than multiplied (MADE's masks zero about half of each matrix
//! once its hidden units are sorted by degree).

use std::ops::Range;

use crate::engine::isa;

/// A block of a masked weight matrix `[out, in]`.
///
/// In a tiling by units, the tiles partition the units (output rows) and the units of a tile see
/// no input outside `inputs`; in a tiling by inputs, the tiles partition the inputs and no unit
/// outside `units` sees the tile's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    /// Output units (rows of the weight matrix).
    pub units: Range<usize>,
    /// Inputs (columns of the weight matrix).
    pub inputs: Range<usize>,
}

/// Candidate tile boundaries are multiples of this many rows (and the ends), so that blocks
/// start and end on whole pairs of 8-wide vectors.
const STEP: usize = 16;
/// Cost of one more product call, in multiply-adds per batch row: tiles are only split where
/// the skipped weights outweigh it.
///
/// With 8-wide vectors (AVX2) a call costs about 1 µs beyond its arithmetic (measured: 128×16×16
/// takes 2.1 µs, 512×16×64 runs at 84 GFLOP/s), about 40k multiply-adds, so 128 per row for the
/// 256–512-row blocks of a training step or an evaluation; a MADE 64 → 512 → 512 → 128 then gets
/// 4–32 tiles per layer and does 52–77% of the dense products. With 16-wide vectors (AVX-512) the
/// arithmetic is twice as fast and a narrow tile (16 units: one vector) runs `gemm`'s slowest
/// kernel, so fewer, wider tiles win: on Zen 5 (`bench/results/2026-12-02-made-tiles-avx512-
/// zen5.txt`) 2048 took the MAF's M training step from 3.7–4.2 to 2.7–2.8 ms and its log-prob
/// from 38–40 to 28 ms, L from 57 to 40 ms and 273 to 205 ms (512–1024 were close; fully dense
/// was slower, 36 ms).
fn call_cost() -> usize {
    // The kernels' width (capped by `NORMFLOW_ISA`, so that a capped run tiles as such a CPU would).
    if isa::active().lanes() >= 16 {
        2048
    } else {
        128
    }
}

/// The tilings of a layer's 0/1 mask `[out, in]`, and where its fixed entries lie.
#[derive(Clone, Debug)]
pub(crate) struct LayerMask {
    /// Tiles partitioning the units: the forward product.
    pub by_units: Vec<Tile>,
    /// Tiles partitioning the inputs: the input gradient and the weight gradient.
    pub by_inputs: Vec<Tile>,
    /// Runs of consecutive fixed entries in the flat mask: what a weight gradient built from
    /// the `by_inputs` tiles must zero (the tiles' products write some of them, and none of the
    /// tiles covers the rest).
    zero_runs: Vec<Range<usize>>,
}

impl LayerMask {
    /// Tilings for `mask`, `fan_out × fan_in` row-major, for this CPU's products.
    pub(crate) fn new(mask: &[f32], fan_out: usize, fan_in: usize) -> Self {
        Self::with_call_cost(mask, fan_out, fan_in, call_cost())
    }

    /// Tilings for `mask` with a given cost per product call (see [`call_cost`]).
    fn with_call_cost(mask: &[f32], fan_out: usize, fan_in: usize, call_cost: usize) -> Self {
        assert_eq!(mask.len(), fan_out * fan_in, "mask size");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0), "mask entries are 0 or 1");
        let by_units = plan(mask, fan_out, fan_in, call_cost);
        let transposed: Vec<f32> = (0..fan_in).flat_map(|i| (0..fan_out).map(|o| mask[o * fan_in + i]).collect::<Vec<_>>()).collect();
        let by_inputs =
            plan(&transposed, fan_in, fan_out, call_cost).into_iter().map(|t| Tile { units: t.inputs, inputs: t.units }).collect();
        let zero_runs = zero_runs(mask);
        Self { by_units, by_inputs, zero_runs }
    }

    /// Sets the fixed entries of a weight (or weight gradient) `[out, in]` to zero.
    pub(crate) fn zero_fixed(&self, weight: &mut [f32]) {
        for run in &self.zero_runs {
            weight[run.clone()].fill(0.0);
        }
    }

    /// The mask again, `len` entries, from its runs of zeros.
    #[cfg(test)]
    pub(crate) fn dense(&self, len: usize) -> Vec<f32> {
        let mut mask = vec![1.0; len];
        self.zero_fixed(&mut mask);
        mask
    }
}

/// Runs of consecutive zeros in `mask`.
fn zero_runs(mask: &[f32]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m == 0.0) {
        match runs.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Multiply-adds per batch row that the products of a layer masked by `mask` (`[fan_out,
/// fan_in]`, 0 = fixed at zero) do: forward, weight gradient and input gradient, in that order
/// (an unmasked layer does `fan_out · fan_in` in each).
#[cfg(feature = "bench")]
pub fn masked_product_macs(mask: &[f32], fan_out: usize, fan_in: usize) -> [usize; 3] {
    let m = LayerMask::new(mask, fan_out, fan_in);
    let area = |tiles: &[Tile]| tiles.iter().map(|t| t.units.len() * t.inputs.len()).sum();
    [area(&m.by_units), area(&m.by_inputs), area(&m.by_inputs)]
}

/// Partition of the rows of `mask` (`rows × cols`) into runs, each tagged with the column range
/// holding all of its rows' free entries, chosen to minimise the multiply-adds plus
/// `call_cost` per run (dynamic programming over boundaries at multiples of [`STEP`]).
fn plan(mask: &[f32], rows: usize, cols: usize, call_cost: usize) -> Vec<Tile> {
    if rows == 0 {
        return Vec::new();
    }
    // Free column span of each candidate block of rows (empty: lo > hi).
    let bounds: Vec<usize> = (0..rows).step_by(STEP).chain(std::iter::once(rows)).collect();
    let spans: Vec<(usize, usize)> = bounds
        .windows(2)
        .map(|w| {
            let mut span = (cols, 0);
            for r in w[0]..w[1] {
                let row = &mask[r * cols..(r + 1) * cols];
                if let (Some(lo), Some(hi)) = (row.iter().position(|&m| m != 0.0), row.iter().rposition(|&m| m != 0.0)) {
                    span = (span.0.min(lo), span.1.max(hi + 1));
                }
            }
            span
        })
        .collect();
    let n = spans.len();
    // best[j]: cost of the first j blocks; last[j]: where the last run of that plan starts and
    // the column span of that run.
    let mut best = vec![usize::MAX; n + 1];
    let mut last = vec![(0, (cols, 0)); n + 1];
    best[0] = 0;
    for j in 1..=n {
        let mut span = (cols, 0);
        for i in (0..j).rev() {
            span = (span.0.min(spans[i].0), span.1.max(spans[i].1));
            let cost = best[i] + (bounds[j] - bounds[i]) * span.1.saturating_sub(span.0) + call_cost;
            if cost < best[j] {
                best[j] = cost;
                last[j] = (i, span);
            }
        }
    }
    let mut tiles = Vec::new();
    let mut j = n;
    while j > 0 {
        let (i, (lo, hi)) = last[j];
        tiles.push(Tile { units: bounds[i]..bounds[j], inputs: if lo < hi { lo..hi } else { 0..0 } });
        j = i;
    }
    tiles.reverse();
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every free entry lies in its tile, and the tiles partition the rows (units) or the
    /// columns (inputs).
    fn check(m: &LayerMask, mask: &[f32], fan_out: usize, fan_in: usize) {
        assert_eq!(m.dense(mask.len()), mask, "the runs of zeros are the mask's");
        let mut next = 0;
        for t in &m.by_units {
            assert_eq!(t.units.start, next);
            next = t.units.end;
        }
        assert_eq!(next, fan_out);
        next = 0;
        for t in &m.by_inputs {
            assert_eq!(t.inputs.start, next);
            next = t.inputs.end;
        }
        assert_eq!(next, fan_in);
        for o in 0..fan_out {
            for i in 0..fan_in {
                if mask[o * fan_in + i] != 0.0 {
                    let inside = |t: &&Tile| t.units.contains(&o) && t.inputs.contains(&i);
                    assert!(m.by_units.iter().filter(inside).count() == 1, "free weight ({o}, {i}) outside the unit tiles");
                    assert!(m.by_inputs.iter().filter(inside).count() == 1, "free weight ({o}, {i}) outside the input tiles");
                }
            }
        }
    }

    #[test]
    fn staircase_masks_skip_about_half_the_weights() {
        // Unit o sees inputs 0..=o/2: a lower staircase, 256 × 128.
        let (fan_out, fan_in) = (256, 128);
        let mask: Vec<f32> = (0..fan_out * fan_in).map(|k| if k % fan_in <= k / fan_in / 2 { 1.0 } else { 0.0 }).collect();
        let area = |tiles: &[Tile]| tiles.iter().map(|t| t.units.len() * t.inputs.len()).sum::<usize>() as f64 / (fan_out * fan_in) as f64;
        // 8-wide vectors' call cost: many narrow tiles.
        let m = LayerMask::with_call_cost(&mask, fan_out, fan_in, 128);
        check(&m, &mask, fan_out, fan_in);
        assert!(m.by_units.len() > 2 && area(&m.by_units) < 0.65, "{:?}", m.by_units);
        assert!(m.by_inputs.len() > 2 && area(&m.by_inputs) < 0.65, "{:?}", m.by_inputs);
        // 16-wide vectors' call cost: fewer, wider tiles that still skip part of the zeros.
        let wide = LayerMask::with_call_cost(&mask, fan_out, fan_in, 2048);
        check(&wide, &mask, fan_out, fan_in);
        assert!(wide.by_units.len() > 1 && wide.by_units.len() < m.by_units.len(), "{:?}", wide.by_units);
        assert!(area(&wide.by_units) > area(&m.by_units) && area(&wide.by_units) < 0.8, "{:?}", wide.by_units);
        // And the CPU's own choice is one of the two.
        let own = LayerMask::new(&mask, fan_out, fan_in);
        assert!(own.by_units == m.by_units || own.by_units == wide.by_units);
    }

    #[test]
    fn dense_small_and_empty_masks_keep_one_tile() {
        let m = LayerMask::new(&[1.0; 40 * 24], 40, 24);
        assert_eq!(m.by_units, vec![Tile { units: 0..40, inputs: 0..24 }]);
        assert_eq!(m.by_inputs, vec![Tile { units: 0..40, inputs: 0..24 }]);
        // Unsorted (cyclic) MADE-like degrees: no block is skippable, the plan stays whole.
        let mask: Vec<f32> = (0..64 * 8).map(|k| if k % 8 <= (k / 8) % 7 { 1.0 } else { 0.0 }).collect();
        let m = LayerMask::new(&mask, 64, 8);
        check(&m, &mask, 64, 8);
        // A row that sees nothing gets an empty input range.
        let mut mask = vec![1.0; 20 * 4];
        mask[..4].fill(0.0);
        let m = LayerMask::new(&mask, 20, 4);
        check(&m, &mask, 20, 4);
    }
}
