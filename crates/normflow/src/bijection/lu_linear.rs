//! Invertible linear layer `x = W z + b` with `W = P L U` (Glow's LU parametrisation,
//! Kingma & Dhariwal 2018, arXiv:1807.03039): a fixed permutation `P`, a unit lower-triangular
//! `L`, and an upper-triangular `U` whose diagonal is `exp(s)`, so `log|det W| = Σ s` is free and
//! the inverse is two triangular inversions.

use super::whitening::whitening_factors;
use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::pool::{self, Buf};
use crate::engine::{matmul_a_bt, matmul_ab, matmul_at_b, Matrix};
use crate::io::TensorSource;
use crate::{Bijection, Error, Result};

/// `x = P L U z + b`, starting as the identity (`L = U = I`, `b = 0`).
///
/// Parameters: strictly lower `L` (row-major, `d(d−1)/2`), strictly upper `U` (same), the
/// log-diagonal `s` of `U` (`d`), and `b` (`d`).
#[derive(Clone, Debug)]
pub struct LuLinear {
    dim: usize,
    perm: Vec<usize>,
    params: Vec<f32>,
    /// Set by [`LuLinear::whitening`]: the first [`Bijection::data_init`] sets the layer to the
    /// data's whitening map.
    whitens: bool,
    /// Whether that initialisation has happened (saved, so a loaded model keeps its weights).
    initialized: bool,
}

struct LuCache {
    /// The layer's input, minus the bias in the inverse direction.
    input: Matrix,
}

/// Dense `d × d` matrices of one evaluation.
struct Mats {
    l: Buf,
    u: Buf,
    /// `W = P L U`.
    w: Buf,
}

fn matmul(a: &[f32], b: &[f32], d: usize) -> Buf {
    let mut c = Buf::zeroed(d * d);
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik != 0.0 {
                for j in 0..d {
                    c[i * d + j] += aik * b[k * d + j];
                }
            }
        }
    }
    c
}

fn transpose(a: &[f32], d: usize) -> Buf {
    (0..d * d).map(|p| a[(p % d) * d + p / d]).collect()
}

/// Inverse of a lower-triangular matrix (forward substitution on the identity).
fn invert_lower(l: &[f32], d: usize) -> Buf {
    let mut inv = Buf::zeroed(d * d);
    for c in 0..d {
        for i in c..d {
            let mut v = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                v -= l[i * d + k] * inv[k * d + c];
            }
            inv[i * d + c] = v / l[i * d + i];
        }
    }
    inv
}

/// A random `d × d` orthogonal matrix (row-major, f64): Gram-Schmidt on the columns of a
/// Gaussian matrix, twice for accuracy.
fn random_orthogonal(d: usize, rng: &mut crate::engine::Rng) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = (0..d).map(|_| (0..d).map(|_| rng.normal()).collect()).collect();
    for j in 0..d {
        let (done, rest) = cols.split_at_mut(j);
        let c = &mut rest[0];
        for _ in 0..2 {
            for q in done.iter() {
                let dot: f64 = q.iter().zip(c.iter()).map(|(a, b)| a * b).sum();
                c.iter_mut().zip(q).for_each(|(v, q)| *v -= dot * q);
            }
        }
        let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        c.iter_mut().for_each(|v| *v /= norm);
    }
    (0..d * d).map(|p| cols[p % d][p / d]).collect()
}

/// LU decomposition with partial pivoting of `a` (`d × d`, row-major): returns `piv` and the
/// packed factors (`L` strictly below the diagonal, unit diagonal implied; `U` on and above),
/// with row `i` of `L·U` equal to row `piv[i]` of `a`.
fn pivoted_lu(mut a: Vec<f64>, d: usize) -> (Vec<usize>, Vec<f64>) {
    let mut piv: Vec<usize> = (0..d).collect();
    for k in 0..d {
        let p = (k..d).max_by(|&i, &j| a[i * d + k].abs().total_cmp(&a[j * d + k].abs())).unwrap_or(k);
        if p != k {
            for j in 0..d {
                a.swap(k * d + j, p * d + j);
            }
            piv.swap(k, p);
        }
        for i in k + 1..d {
            let f = a[i * d + k] / a[k * d + k];
            a[i * d + k] = f;
            for j in k + 1..d {
                a[i * d + j] -= f * a[k * d + j];
            }
        }
    }
    (piv, a)
}

impl LuLinear {
    /// An identity-initialised layer with row permutation `perm` (`x_j` takes row `perm[j]` of
    /// `L U z`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `perm` is not a permutation.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let d = perm.len();
        if d == 0 {
            return Err(Error::config("LU-linear needs at least one dimension"));
        }
        let mut seen = vec![false; d];
        for &p in &perm {
            if p >= d || std::mem::replace(&mut seen[p], true) {
                return Err(Error::config("LU-linear permutation is not a permutation"));
            }
        }
        Ok(Self { dim: d, perm, params: vec![0.0; d * (d - 1) + 2 * d], whitens: false, initialized: false })
    }

    /// A layer that [`Bijection::data_init`] sets, once, to the whitening map of its data-side
    /// rows: `x = C z + μ` with `C Cᵀ` their covariance (Cholesky), so that a flow whose other
    /// layers start as the identity starts as the full-covariance Gaussian of the training
    /// data. It trains like any LU-linear layer afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `dim` 0.
    pub fn whitening(dim: usize) -> Result<Self> {
        Ok(Self { whitens: true, ..Self::new((0..dim).collect())? })
    }

    /// A layer that starts as a random rotation `W = Q` (Glow's initialisation: `Q` orthogonal,
    /// from the QR decomposition of a Gaussian matrix), stored as its pivoted LU factors. The
    /// column signs of `Q` are chosen so that `U`'s diagonal is positive, as the parametrisation
    /// `exp(s)` needs; `log|det W| = 0` at the start.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `dim` 0.
    pub fn rotation(dim: usize, rng: &mut crate::engine::Rng) -> Result<Self> {
        let d = dim;
        if d == 0 {
            return Err(Error::config("LU-linear needs at least one dimension"));
        }
        let q = random_orthogonal(d, rng);
        let (piv, lu) = pivoted_lu(q, d);
        // Row j of W = Q·D is row perm[j] of L·U·D, and row i of L·U is row piv[i] of Q.
        let mut perm = vec![0; d];
        for (i, &p) in piv.iter().enumerate() {
            perm[p] = i;
        }
        let mut layer = Self::new(perm)?;
        let t = layer.tri();
        let (mut pl, mut pu) = (0, t);
        for i in 0..d {
            for j in 0..d {
                // D flips column j by the sign of U's diagonal entry in that column.
                let v = lu[i * d + j] * if j >= i { lu[j * d + j].signum() } else { 1.0 };
                if j < i {
                    layer.params[pl] = v as f32;
                    pl += 1;
                } else if j > i {
                    layer.params[pu] = v as f32;
                    pu += 1;
                } else {
                    layer.params[2 * t + i] = v.abs().ln() as f32;
                }
            }
        }
        Ok(layer)
    }

    /// The row permutation `P` (`x_j` takes row `perm[j]` of `L U z`).
    pub(crate) fn perm(&self) -> &[usize] {
        &self.perm
    }

    fn tri(&self) -> usize {
        self.dim * (self.dim - 1) / 2
    }

    fn mats(&self) -> Mats {
        let (d, t) = (self.dim, self.tri());
        let (mut l, mut u) = (Buf::zeroed(d * d), Buf::zeroed(d * d));
        let (mut pl, mut pu) = (0, t);
        for i in 0..d {
            l[i * d + i] = 1.0;
            u[i * d + i] = self.params[2 * t + i].exp();
            for j in 0..d {
                if j < i {
                    l[i * d + j] = self.params[pl];
                    pl += 1;
                } else if j > i {
                    u[i * d + j] = self.params[pu];
                    pu += 1;
                }
            }
        }
        let lu = matmul(&l, &u, d);
        let mut w = Buf::zeroed(d * d);
        for (j, &p) in self.perm.iter().enumerate() {
            w[j * d..(j + 1) * d].copy_from_slice(&lu[p * d..(p + 1) * d]);
        }
        Mats { l, u, w }
    }

    /// `W⁻¹ = U⁻¹ L⁻¹ Pᵀ`.
    fn inverse_matrix(&self, m: &Mats) -> Buf {
        let d = self.dim;
        let l_inv = invert_lower(&m.l, d);
        let u_inv = transpose(&invert_lower(&transpose(&m.u, d), d), d);
        let lu_inv = matmul(&u_inv, &l_inv, d);
        // (P·A)⁻¹ = A⁻¹·Pᵀ: column j of the result is column perm[j] of A⁻¹.
        let mut out = Buf::zeroed(d * d);
        for i in 0..d {
            for (j, &p) in self.perm.iter().enumerate() {
                out[i * d + j] = lu_inv[i * d + p];
            }
        }
        out
    }

    fn log_det(&self) -> f32 {
        self.params[2 * self.tri()..2 * self.tri() + self.dim].iter().sum()
    }

    fn bias(&self) -> &[f32] {
        &self.params[2 * self.tri() + self.dim..]
    }

    /// Returns the output and, for the cache, the input (minus the bias in the inverse direction).
    fn run(&self, input: &Matrix, direction: Direction) -> Result<(Matrix, Vec<f32>, Matrix)> {
        check_width("LU-linear input", input, self.dim)?;
        let (d, rows) = (self.dim, input.rows());
        let m = self.mats();
        let mut out = Matrix::zeros(rows, d);
        let (mat, src, ld) = match direction {
            Direction::Forward => {
                for r in 0..rows {
                    out.row_mut(r).copy_from_slice(self.bias());
                }
                (m.w.clone(), input.clone(), self.log_det())
            }
            Direction::Inverse => {
                let mut centred = input.clone();
                for r in 0..rows {
                    centred.row_mut(r).iter_mut().zip(self.bias()).for_each(|(v, b)| *v -= b);
                }
                (self.inverse_matrix(&m), centred, -self.log_det())
            }
        };
        matmul_a_bt(out.as_mut_slice(), src.as_slice(), &mat, rows, d, d, true);
        Ok((out, pool::filled(rows, ld), src))
    }
}

impl Bijection for LuLinear {
    fn dim(&self) -> usize {
        self.dim
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.run(input, direction).map(|(o, l, _)| (o, l))
    }

    fn num_params(&self) -> usize {
        self.params.len()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        f(&self.params);
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(&mut self.params);
    }

    fn train_forward(
        &self,
        input: &Matrix,
        _context: Option<&Matrix>,
        direction: Direction,
        tape: &mut Tape,
    ) -> Result<(Matrix, Vec<f32>)> {
        let (out, ld, src) = self.run(input, direction)?;
        tape.push(LuCache { input: src });
        Ok((out, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let cache: LuCache = tape.pop()?;
        let (d, t, rows) = (self.dim, self.tri(), grad_out.rows());
        let m = self.mats();
        // out = src · Mᵀ (+ b): ∂L/∂M = gᵀ · src, ∂L/∂src = g · M.
        let mat = match direction {
            Direction::Forward => m.w.clone(),
            Direction::Inverse => self.inverse_matrix(&m),
        };
        // Products over all rows (an image's 1×1 convolution has a row per pixel).
        let mut g_mat = Buf::zeroed(d * d);
        matmul_at_b(&mut g_mat, grad_out.as_slice(), cache.input.as_slice(), d, d, rows, false);
        let mut g_in = Matrix::zeros(rows, d);
        matmul_ab(g_in.as_mut_slice(), grad_out.as_slice(), &mat, rows, d, d, false);
        let g_ld: f32 = grad_log_det.iter().sum();
        let (g_w, g_b, ld_sign) = match direction {
            Direction::Forward => (g_mat, column_sums(&grad_out, 1.0), 1.0),
            Direction::Inverse => {
                // V = W⁻¹: dV = −V dW V, so ∂L/∂W = −Vᵀ (∂L/∂V) Vᵀ; src = x − b, so ∂L/∂b = −Σ ∂L/∂src.
                let vt = transpose(&mat, d);
                let g_w = matmul(&matmul(&vt, &g_mat, d), &vt, d).iter().map(|v| -v).collect();
                (g_w, column_sums(&g_in, -1.0), -1.0)
            }
        };
        // W = P L U: ∂L/∂(LU) = Pᵀ ∂L/∂W; then ∂L/∂L = G Uᵀ, ∂L/∂U = Lᵀ G.
        let mut g_lu = Buf::zeroed(d * d);
        for (j, &p) in self.perm.iter().enumerate() {
            g_lu[p * d..(p + 1) * d].copy_from_slice(&g_w[j * d..(j + 1) * d]);
        }
        let g_l = matmul(&g_lu, &transpose(&m.u, d), d);
        let g_u = matmul(&transpose(&m.l, d), &g_lu, d);
        let (mut pl, mut pu) = (0, t);
        for i in 0..d {
            for j in 0..d {
                if j < i {
                    grads[pl] = g_l[i * d + j];
                    pl += 1;
                } else if j > i {
                    grads[pu] = g_u[i * d + j];
                    pu += 1;
                }
            }
            grads[2 * t + i] = g_u[i * d + i] * m.u[i * d + i] + ld_sign * g_ld;
            grads[2 * t + d + i] = g_b[i];
        }
        Ok(g_in)
    }

    fn data_init(&mut self, x: &Matrix, _context: Option<&Matrix>) -> Result<Matrix> {
        check_width("LU-linear input", x, self.dim)?;
        if self.whitens && !self.initialized && x.rows() > 1 {
            let (lower, log_diag, mean) = whitening_factors(x);
            let (d, t) = (self.dim, self.tri());
            let p = &mut self.params;
            p[..t].iter_mut().zip(&lower).for_each(|(p, &v)| *p = v as f32);
            p[t..2 * t].fill(0.0);
            p[2 * t..2 * t + d].iter_mut().zip(&log_diag).for_each(|(p, &v)| *p = v as f32);
            p[2 * t + d..].iter_mut().zip(&mean).for_each(|(p, &v)| *p = v as f32);
            self.initialized = true;
        }
        Ok(self.run(x, Direction::Inverse)?.0)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::LuLinear { perm: self.perm.clone(), whitens: self.whitens }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        out.push((format!("{prefix}params"), self.params.clone()));
        if self.whitens {
            out.push((format!("{prefix}initialized"), vec![f32::from(u8::from(self.initialized))]));
        }
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.params = src.take(&format!("{prefix}params"), self.params.len())?;
        if self.whitens {
            self.initialized = src.take(&format!("{prefix}initialized"), 1)?[0] != 0.0;
        }
        Ok(())
    }
}

/// `sign ·` the sum of each column of `m`, row by row (every column's running sum advances
/// at once, instead of one strided pass per column).
fn column_sums(m: &Matrix, sign: f32) -> Buf {
    let mut sums = Buf::zeroed(m.cols());
    for r in 0..m.rows() {
        sums.iter_mut().zip(m.row(r)).for_each(|(s, v)| *s += v);
    }
    sums.iter_mut().for_each(|s| *s *= sign);
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Rng;

    #[test]
    fn a_rotation_starts_orthogonal_with_zero_log_det_and_differs_by_seed() {
        for d in [1, 2, 4, 8, 16] {
            let layer = LuLinear::rotation(d, &mut Rng::new(3)).unwrap();
            let w = layer.mats().w;
            for i in 0..d {
                for j in 0..d {
                    let dot: f32 = (0..d).map(|k| w[i * d + k] * w[j * d + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "d {d}: (W Wᵀ)[{i}, {j}] = {dot}");
                }
            }
            let z = Matrix::from_vec(1, d, (0..d).map(|i| i as f32 - 1.5).collect());
            let (_, ld) = layer.transform(&z, None, Direction::Forward).unwrap();
            assert!(ld[0].abs() < 1e-5, "d {d}: log-det {}", ld[0]);
            if d > 1 {
                let other = LuLinear::rotation(d, &mut Rng::new(4)).unwrap().mats().w;
                assert!(w.iter().zip(other.iter()).any(|(a, b)| (a - b).abs() > 1e-3), "d {d}: seeds give the same rotation");
                assert!((0..d).any(|i| (w[i * d + i] - 1.0).abs() > 1e-3), "d {d}: the identity is not a random rotation");
            }
        }
    }
}
