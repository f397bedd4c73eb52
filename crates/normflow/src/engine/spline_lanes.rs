//! The rational-quadratic spline's forward and inverse passes as a [`LaneKernel`]: evaluated
//! for [`LANES`] elements at once, with branch-free bin searches and selections and vectorised
//! `exp`/`ln`. An element-by-element version spent most of its time in branches, bin searches
//! and scalar `exp`/`ln` calls.
//!
//! The maths is that of [`super::spline`]; its backward pass reads the knots this pass records.

use super::lanes::{LaneGradient, LaneKernel, Lanes};
use super::spline::{SplineShape, MIN_BIN, MIN_DERIVATIVE, RECORD_HEAD};
use super::Direction;
use crate::engine::fastmath::{self, pick, LANES};
use crate::engine::pool::Buf;

/// `softplus(u + c) + MIN_DERIVATIVE` (with `c` such that `u = 0` gives exactly 1) and its
/// slope, for each lane.
#[inline(always)]
fn derivatives<const FMA: bool>(u: &Lanes) -> (Lanes, Lanes) {
    // c = ln(e^(1 − min) − 1)
    const SHIFT: f32 = 0.539_742_4;
    let (mut d, mut slope) = ([0.0; LANES], [0.0; LANES]);
    for l in 0..LANES {
        let v = u[l] + SHIFT;
        let e = fastmath::exp::<FMA>(v);
        let (soft, sl) = (fastmath::ln::<FMA>(1.0 + e) + MIN_DERIVATIVE, e / (1.0 + e));
        // Far right the softplus is v itself (and e would lose 1 + e's precision).
        (d[l], slope[l]) = if v > 20.0 { (v + MIN_DERIVATIVE, 1.0) } else { (soft, sl) };
    }
    (d, slope)
}

/// Scratch space for evaluating a spline [`LANES`] elements at a time.
pub(crate) struct SplineLanes {
    shape: SplineShape,
    /// Parameters by lane: `theta[p·LANES + l]`; the first `2K` become probabilities in place.
    theta: Buf,
    /// Knot positions by lane, `K + 1` each.
    xs: Buf,
    ys: Buf,
    /// The last evaluated group's bins, and which of its elements were inside the bound.
    bin: Bin,
    inside: [bool; LANES],
    /// Backward pass: the group's gathered records and its parameter gradients, by lane.
    record: Buf,
    g_theta: Buf,
}

/// The bin of each lane's element and the bin's knots and knot derivatives.
#[derive(Default)]
struct Bin {
    k: [u32; LANES],
    x0: Lanes,
    x1: Lanes,
    y0: Lanes,
    y1: Lanes,
    d0: Lanes,
    d1: Lanes,
    dd0: Lanes,
    dd1: Lanes,
}

impl LaneKernel for SplineLanes {
    #[inline(always)]
    fn theta_mut(&mut self) -> &mut [Lanes] {
        self.theta.as_chunks_mut::<LANES>().0
    }

    #[inline(always)]
    fn record_len(&self) -> usize {
        super::spline::record_len(self.shape)
    }

    /// Elements outside the bound pass through with log-det 0.
    #[inline(always)]
    fn eval<const FMA: bool>(&mut self, direction: Direction, v: &Lanes) -> (Lanes, Lanes) {
        let bound = self.shape.bound;
        let mut safe = [0.0f32; LANES];
        for l in 0..LANES {
            self.inside[l] = v[l] >= -bound && v[l] <= bound;
            // Elements outside (NaN included) enter the formulas as 0 and are discarded.
            safe[l] = if self.inside[l] { v[l] } else { 0.0 };
        }
        self.build_knots::<FMA>();
        let search = match direction {
            Direction::Forward => &self.xs,
            Direction::Inverse => &self.ys,
        };
        self.bin = self.find_bins::<FMA>(search, &safe);
        let (mut y, mut ld) = match direction {
            Direction::Forward => forward::<FMA>(&self.bin, &safe),
            Direction::Inverse => inverse::<FMA>(&self.bin, &safe),
        };
        for l in 0..LANES {
            y[l] = if self.inside[l] { y[l] } else { v[l] };
            ld[l] = if self.inside[l] { ld[l] } else { 0.0 };
        }
        (y, ld)
    }

    /// The layout [`LaneGradient::grad`] reads: inside flag, bin, the bin's knots and knot
    /// derivatives with their softplus slopes, then the width and height probabilities.
    #[inline(always)]
    fn save(&self, rec: &mut [Lanes]) {
        let b = &self.bin;
        for l in 0..LANES {
            rec[0][l] = if self.inside[l] { 1.0 } else { 0.0 };
            rec[1][l] = b.k[l] as f32;
        }
        rec[2..RECORD_HEAD].copy_from_slice(&[b.x0, b.x1, b.y0, b.y1, b.d0, b.d1, b.dd0, b.dd1]);
        let probs = 2 * self.shape.bins;
        rec[RECORD_HEAD..RECORD_HEAD + probs].copy_from_slice(&self.theta.as_chunks::<LANES>().0[..probs]);
    }
}

impl LaneGradient for SplineLanes {
    #[inline(always)]
    fn record_mut(&mut self) -> &mut [Lanes] {
        self.record.as_chunks_mut::<LANES>().0
    }

    #[inline(always)]
    fn theta_grad(&self) -> &[Lanes] {
        self.g_theta.as_chunks::<LANES>().0
    }

    /// Hand-derived partials of `y` and `ℓ = log dy/dx` with respect to the position in the
    /// bin `ξ`, the bin's slope `s`, its height `h` and the two knot derivatives, chained
    /// through the knot positions (a knot sits at −B plus the widths before it, so its
    /// gradient reaches every earlier width) and the softmaxes.
    ///
    /// The inverse pass `x = F⁻¹(y)` reuses the forward partials: with `c = (g_x − g_ld·∂ℓ/∂x)/F′`,
    /// `∂L/∂y = c` and `∂L/∂θ = −c·∂F/∂θ − g_ld·∂ℓ/∂θ`.
    #[inline(always)]
    fn grad<const FMA: bool>(&mut self, direction: Direction, x: &Lanes, g_out: &Lanes, g_ld: &Lanes) -> Lanes {
        let bins = self.shape.bins;
        let rec = self.record.as_chunks::<LANES>().0;
        let (inside, kb) = (&rec[0], &rec[1]);
        let [x0, x1, y0, y1, d0, d1, dd0, dd1] = [&rec[2], &rec[3], &rec[4], &rec[5], &rec[6], &rec[7], &rec[8], &rec[9]];
        let (pw, ph) = (&rec[RECORD_HEAD..RECORD_HEAD + bins], &rec[RECORD_HEAD + bins..RECORD_HEAD + 2 * bins]);
        let zero = [0.0f32; LANES];
        let (mut g_in, mut g_start, mut g_own) = (zero, [zero; 2], [zero; 2]);
        let (mut g_k0, mut g_k1) = (zero, zero);
        let forward = direction == Direction::Forward;
        for l in 0..LANES {
            let (w, h) = (x1[l] - x0[l], y1[l] - y0[l]);
            let s = h / w;
            let (d0, d1) = (d0[l], d1[l]);
            let xi = ((x[l] - x0[l]) / w).clamp(0.0, 1.0);
            let q = xi * (1.0 - xi);
            let dq = 1.0 - 2.0 * xi;
            let t = d1 + d0 - 2.0 * s;
            let den = s + t * q;
            let num = h * (s * xi * xi + d0 * q);
            let n2 = d1 * xi * xi + 2.0 * s * q + d0 * (1.0 - xi) * (1.0 - xi);
            let den2 = den * den;
            let y_xi = (h * (2.0 * s * xi + d0 * dq) * den - num * t * dq) / den2;
            let y_s = (h * xi * xi * den - num * (1.0 - 2.0 * q)) / den2;
            let y_h = (s * xi * xi + d0 * q) / den;
            let y_d0 = (h * q * den - num * q) / den2;
            let y_d1 = -num * q / den2;
            let l_xi = (2.0 * d1 * xi + 2.0 * s * dq - 2.0 * d0 * (1.0 - xi)) / n2 - 2.0 * t * dq / den;
            let l_s = 2.0 / s + 2.0 * q / n2 - 2.0 * (1.0 - 2.0 * q) / den;
            let l_d0 = (1.0 - xi) * (1.0 - xi) / n2 - 2.0 * q / den;
            let l_d1 = xi * xi / n2 - 2.0 * q / den;
            // Both directions computed and one picked: a branch here would keep the loop
            // from vectorising. Inverse: the pass's log-det is −ℓ, so its gradient enters
            // with the opposite sign.
            let c = (g_out[l] - g_ld[l] * l_xi / w) / (s * s * n2 / den2);
            let gy = pick(forward, g_out[l], -c);
            let gl = pick(forward, g_ld[l], -g_ld[l]);
            let g_xi = gy * y_xi + gl * l_xi;
            let g_s = gy * y_s + gl * l_s;
            let own_in = pick(forward, g_xi / w, c);
            let inside = inside[l] == 1.0;
            g_in[l] = pick(inside, own_in, g_out[l]);
            // Gradients of the bin's own width and height, and of every earlier one (through
            // the bin's left knot); zero for elements outside the bound.
            g_own[0][l] = pick(inside, -g_xi * xi / w - g_s * s / w, 0.0);
            g_own[1][l] = pick(inside, gy * y_h + g_s / w, 0.0);
            g_start[0][l] = pick(inside, -g_xi / w, 0.0);
            g_start[1][l] = pick(inside, gy, 0.0);
            g_k0[l] = pick(inside, (gy * y_d0 + gl * l_d0) * dd0[l], 0.0);
            g_k1[l] = pick(inside, (gy * y_d1 + gl * l_d1) * dd1[l], 0.0);
        }
        let scale = 2.0 * self.shape.bound * (1.0 - MIN_BIN * bins as f32);
        let out = self.g_theta.as_chunks_mut::<LANES>().0;
        for (side, probs) in [pw, ph].into_iter().enumerate() {
            // ∂L/∂width_j: g_start before the bin, g_own at it, 0 after. Softmax backward:
            // ∂L/∂u_j = p_j (∂L/∂width_j − Σ_i p_i ∂L/∂width_i).
            let (start, own) = (g_start[side], g_own[side]);
            let mut dot = zero;
            // On copies (`gv`, `pv`): the compiler cannot tell that the records and the
            // gradients do not overlap, and would not vectorise.
            for (j, p) in probs.iter().enumerate() {
                let (jf, pv) = (j as f32, *p);
                let mut gv = zero;
                for l in 0..LANES {
                    gv[l] = pick(jf < kb[l], start[l], pick(jf == kb[l], own[l], 0.0));
                    dot[l] += pv[l] * gv[l];
                }
                out[side * bins + j] = gv;
            }
            for (j, p) in probs.iter().enumerate() {
                let (pv, mut gv) = (*p, out[side * bins + j]);
                for l in 0..LANES {
                    gv[l] = scale * pv[l] * (gv[l] - dot[l]);
                }
                out[side * bins + j] = gv;
            }
        }
        // Inner derivative j (knot j + 1) belongs to the bin's left knot when kb = j + 1 and
        // to its right knot when kb = j.
        for (j, g) in out[2 * bins..].iter_mut().enumerate() {
            let (left, right) = ((j + 1) as f32, j as f32);
            let mut gv = zero;
            for l in 0..LANES {
                gv[l] = pick(kb[l] == left, g_k0[l], pick(kb[l] == right, g_k1[l], 0.0));
            }
            *g = gv;
        }
        g_in
    }
}

impl SplineLanes {
    /// Scratch for splines of `shape`.
    pub(crate) fn new(shape: SplineShape) -> Self {
        let k = shape.bins;
        Self {
            shape,
            theta: Buf::zeroed(shape.params_per_dim() * LANES),
            xs: Buf::zeroed((k + 1) * LANES),
            ys: Buf::zeroed((k + 1) * LANES),
            bin: Bin::default(),
            inside: [false; LANES],
            record: Buf::zeroed(super::spline::record_len(shape) * LANES),
            g_theta: Buf::zeroed(shape.params_per_dim() * LANES),
        }
    }

    /// Softmaxes the width and height parameters in place (lane by lane) and accumulates them
    /// into knot positions.
    #[inline(always)]
    fn build_knots<const FMA: bool>(&mut self) {
        let (k, b) = (self.shape.bins, self.shape.bound);
        let scale = 1.0 - MIN_BIN * k as f32;
        let theta = self.theta.as_chunks_mut::<LANES>().0;
        for (block, knots) in [(0, &mut self.xs), (k, &mut self.ys)] {
            let probs = &mut theta[block..block + k];
            let knots = knots.as_chunks_mut::<LANES>().0;
            let mut max = [f32::NEG_INFINITY; LANES];
            for p in probs.iter() {
                for l in 0..LANES {
                    max[l] = max[l].max(p[l]);
                }
            }
            let mut sum = [0.0f32; LANES];
            for p in probs.iter_mut() {
                let mut pv = *p;
                for l in 0..LANES {
                    pv[l] = fastmath::exp::<FMA>(pv[l] - max[l]);
                    sum[l] += pv[l];
                }
                *p = pv;
            }
            let mut inv = [0.0f32; LANES];
            for l in 0..LANES {
                inv[l] = 1.0 / sum[l];
            }
            let mut acc = [0.0f32; LANES];
            knots[0] = [-b; LANES];
            for (p, knot) in probs.iter_mut().zip(knots[1..].iter_mut()) {
                // On copies: the compiler cannot tell that `p` and `knot` do not overlap, and
                // would not vectorise the stores.
                let (mut pv, mut kv) = (*p, [0.0f32; LANES]);
                for l in 0..LANES {
                    pv[l] *= inv[l];
                    acc[l] += MIN_BIN + scale * pv[l];
                    kv[l] = -b + 2.0 * b * acc[l];
                }
                (*p, *knot) = (pv, kv);
            }
            knots[k] = [b; LANES];
        }
    }

    /// Each lane's bin among `knots` (the last knot belongs to the last bin), its knots and
    /// the derivatives at them (1 at the boundary knots).
    #[inline(always)]
    fn find_bins<const FMA: bool>(&self, knots: &[f32], v: &Lanes) -> Bin {
        let k = self.shape.bins;
        let knots = knots.as_chunks::<LANES>().0;
        let (xs, ys) = (self.xs.as_chunks::<LANES>().0, self.ys.as_chunks::<LANES>().0);
        // Inner derivative parameters: knot j (0 < j < k) has `inner[j − 1]`.
        let inner = &self.theta.as_chunks::<LANES>().0[2 * k..];
        let zero = [0.0f32; LANES];
        // Every lane starts in bin 0 and moves one bin right at each inner knot it reaches
        // (knots increase), taking that bin's knots and derivative parameters as it goes: one
        // pass, with no search followed by a selection. The boundary knots' parameters are
        // placeholders, replaced below.
        let mut bin = [0u32; LANES];
        let (mut x0, mut x1, mut y0, mut y1) = (xs[0], xs[1], ys[0], ys[1]);
        let (mut u0, mut u1) = (zero, if k > 1 { inner[0] } else { zero });
        for j in 1..k {
            let (t, below) = (&knots[j], &inner[j - 1]);
            let above = if j + 1 < k { &inner[j] } else { &zero };
            let (xa, xb, ya, yb) = (&xs[j], &xs[j + 1], &ys[j], &ys[j + 1]);
            for l in 0..LANES {
                let past = v[l] >= t[l];
                bin[l] += past as u32;
                x0[l] = pick(past, xa[l], x0[l]);
                x1[l] = pick(past, xb[l], x1[l]);
                y0[l] = pick(past, ya[l], y0[l]);
                y1[l] = pick(past, yb[l], y1[l]);
                u0[l] = pick(past, below[l], u0[l]);
                u1[l] = pick(past, above[l], u1[l]);
            }
        }
        let mut b = Bin { k: bin, x0, x1, y0, y1, d0: zero, d1: zero, dd0: zero, dd1: zero };
        (b.d0, b.dd0) = derivatives::<FMA>(&u0);
        (b.d1, b.dd1) = derivatives::<FMA>(&u1);
        let last = (k - 1) as u32;
        for l in 0..LANES {
            let (first, end) = (bin[l] == 0, bin[l] == last);
            b.d0[l] = pick(first, 1.0, b.d0[l]);
            b.dd0[l] = pick(first, 0.0, b.dd0[l]);
            b.d1[l] = pick(end, 1.0, b.d1[l]);
            b.dd1[l] = pick(end, 0.0, b.dd1[l]);
        }
        b
    }
}

/// `log dy/dx = log(s²·N₂/den²)` at position `xi` within the bin, lane by lane.
#[inline(always)]
fn log_slope<const FMA: bool>(b: &Bin, xi: &Lanes) -> Lanes {
    let mut out = [0.0f32; LANES];
    for l in 0..LANES {
        let (w, h) = (b.x1[l] - b.x0[l], b.y1[l] - b.y0[l]);
        let (s, t, q) = (h / w, xi[l], xi[l] * (1.0 - xi[l]));
        let den = s + (b.d1[l] + b.d0[l] - 2.0 * s) * q;
        let n2 = b.d1[l] * t * t + 2.0 * s * q + b.d0[l] * (1.0 - t) * (1.0 - t);
        out[l] = fastmath::ln::<FMA>(s * s * n2 / (den * den));
    }
    out
}

/// `x ↦ y` and `log dy/dx` inside the bins.
#[inline(always)]
fn forward<const FMA: bool>(b: &Bin, x: &Lanes) -> (Lanes, Lanes) {
    let mut y = [0.0f32; LANES];
    let mut xi = [0.0f32; LANES];
    for l in 0..LANES {
        let (w, h) = (b.x1[l] - b.x0[l], b.y1[l] - b.y0[l]);
        let s = h / w;
        let t = ((x[l] - b.x0[l]) / w).clamp(0.0, 1.0);
        let q = t * (1.0 - t);
        let den = s + (b.d1[l] + b.d0[l] - 2.0 * s) * q;
        y[l] = b.y0[l] + h * (s * t * t + b.d0[l] * q) / den;
        xi[l] = t;
    }
    (y, log_slope::<FMA>(b, &xi))
}

/// `y ↦ x` and `log dx/dy` inside the bins, by the stable root `2c / (−b − √disc)`.
#[inline(always)]
fn inverse<const FMA: bool>(b: &Bin, y: &Lanes) -> (Lanes, Lanes) {
    let mut x = [0.0f32; LANES];
    let mut xi = [0.0f32; LANES];
    for l in 0..LANES {
        let (w, h) = (b.x1[l] - b.x0[l], b.y1[l] - b.y0[l]);
        let s = h / w;
        let (d0, d1) = (b.d0[l], b.d1[l]);
        let dy = y[l] - b.y0[l];
        let t = d1 + d0 - 2.0 * s;
        let qa = h * (s - d0) + dy * t;
        let qb = h * d0 - dy * t;
        let qc = -s * dy;
        let disc = (qb * qb - 4.0 * qa * qc).max(0.0);
        let denom = -qb - disc.sqrt();
        let root = if denom != 0.0 { (2.0 * qc / denom).clamp(0.0, 1.0) } else { 0.0 };
        x[l] = b.x0[l] + root * w;
        xi[l] = root;
    }
    let mut ld = log_slope::<FMA>(b, &xi);
    ld.iter_mut().for_each(|v| *v = -*v);
    (x, ld)
}

#[cfg(test)]
mod tests {
    use super::super::lanes::{apply_rows, RowLayout};
    use super::*;
    use crate::engine::Rng;

    /// The spline of one element in f64, straight from the paper's formulas: `(y, log dy/dx)`.
    fn reference(shape: SplineShape, x: f64, th: &[f64]) -> (f64, f64) {
        let (k, b) = (shape.bins, shape.bound as f64);
        if !(-b..=b).contains(&x) {
            return (x, 0.0);
        }
        let knots = |raw: &[f64]| {
            let m = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = raw.iter().map(|v| (v - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let mut pos = vec![-b];
            let mut acc = 0.0;
            for v in &e {
                acc += MIN_BIN as f64 + (1.0 - MIN_BIN as f64 * k as f64) * v / sum;
                pos.push(-b + 2.0 * b * acc);
            }
            pos[k] = b;
            pos
        };
        let (xs, ys) = (knots(&th[..k]), knots(&th[k..2 * k]));
        let shift = ((1.0 - MIN_DERIVATIVE as f64).exp() - 1.0).ln();
        let d = |j: usize| if j == 0 || j == k { 1.0 } else { (th[2 * k + j - 1] + shift).exp().ln_1p() + MIN_DERIVATIVE as f64 };
        let j = (1..k).filter(|&j| x >= xs[j]).count();
        let (w, h) = (xs[j + 1] - xs[j], ys[j + 1] - ys[j]);
        let (s, t) = (h / w, (x - xs[j]) / w);
        let (d0, d1) = (d(j), d(j + 1));
        let den = s + (d1 + d0 - 2.0 * s) * t * (1.0 - t);
        let y = ys[j] + h * (s * t * t + d0 * t * (1.0 - t)) / den;
        let slope = s * s * (d1 * t * t + 2.0 * s * t * (1.0 - t) + d0 * (1.0 - t) * (1.0 - t)) / (den * den);
        (y, slope.ln())
    }

    #[test]
    fn lanes_match_an_f64_reference_in_both_directions_for_any_group_split() {
        let mut rng = Rng::new(3);
        for (bins, n, rows) in [(8, 4, 9), (8, 16, 3), (3, 1, 13), (2, 3, 7), (17, 5, 5), (4, 6, 5), (8, 2, 9), (5, 24, 2)] {
            let shape = SplineShape { bins, bound: 3.0 };
            let per = shape.params_per_dim();
            // Two columns beside the transformed ones, which must be left alone.
            let layout = RowLayout { stride: n + 2, offset: 1, n };
            let x: Vec<f32> = (0..rows * (n + 2)).map(|_| (rng.normal() * 2.0) as f32).collect();
            let theta: Vec<f32> = (0..rows * n * per).map(|_| (rng.normal() * 1.5) as f32).collect();
            let mut lanes = SplineLanes::new(shape);
            let (mut y, mut ld) = (vec![7.0f32; x.len()], vec![0.0f32; rows]);
            let rec_len = super::super::spline::record_len(shape);
            let mut record = vec![f32::NAN; super::super::lanes::record_size(rows * n, rec_len)];
            apply_rows(&mut lanes, Direction::Forward, layout, &x, &theta, &mut y, &mut record, &mut ld);
            let mut slope = vec![1.0f64; x.len()];
            for r in 0..rows {
                let mut want_ld = 0.0;
                for c in 0..n + 2 {
                    let at = r * (n + 2) + c;
                    if c == 0 || c == n + 1 {
                        assert_eq!(y[at], 7.0, "untouched column");
                        continue;
                    }
                    let i = c - 1;
                    let th: Vec<f64> = (0..per).map(|p| theta[r * per * n + p * n + i] as f64).collect();
                    let (want, l) = reference(shape, x[at] as f64, &th);
                    want_ld += l;
                    slope[at] = l.exp();
                    assert!((y[at] as f64 - want).abs() < 2e-5 * (1.0 + want.abs()), "bins {bins} n {n}: {} vs {want}", y[at]);
                    // The inside flag: value 0 of the element's lane in its group's record.
                    let e = r * n + i;
                    let inside = record[e / LANES * rec_len * LANES + e % LANES] == 1.0;
                    assert_eq!(inside, x[at].abs() <= 3.0);
                }
                assert!((ld[r] as f64 - want_ld).abs() < 1e-4 * (1.0 + want_ld.abs()), "{} vs {want_ld}", ld[r]);
            }
            let (mut back, mut ld_back) = (vec![7.0f32; x.len()], vec![0.0f32; rows]);
            apply_rows(&mut lanes, Direction::Inverse, layout, &y, &theta, &mut back, &mut [], &mut ld_back);
            for r in 0..rows {
                for i in 0..n {
                    let at = r * (n + 2) + 1 + i;
                    // f32 rounding of y, magnified by the inverse's slope 1/F'.
                    let tol = 1e-5 * (1.0 + x[at].abs() as f64) + 1e-6 * (1.0 + y[at].abs() as f64) / slope[at];
                    assert!(((back[at] - x[at]).abs() as f64) < tol, "bins {bins} n {n}: {} vs {} (slope {})", back[at], x[at], slope[at]);
                }
                assert!((ld_back[r] + ld[r]).abs() < 1e-3 * (1.0 + ld[r].abs()), "{} vs {}", ld_back[r], ld[r]);
            }
        }
    }
}
