//! Matrix products on row-major slices through the `gemm` crate.
//!
//! Every product here runs single-threaded: the engine parallelises across the rows of a batch
//! instead (see `threads`), which measured faster on the small products of flow conditioners.

use gemm::{gemm, Parallelism};

/// `out[m×n] = a[m×k] · b[n×k]ᵀ` (`+=` when `accumulate`).
///
/// This is a linear layer's forward pass with the weight stored `[out, in]`.
pub(crate) fn matmul_a_bt(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    debug_assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= n * k);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the slices cover the strided extents asserted above; out does not alias a or b.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `out[m×n] = a[m×k] · b[k×n]` (`+=` when `accumulate`).
///
/// This is the input gradient of a linear layer: `grad_x = grad_y · W`.
pub(crate) fn matmul_ab(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    debug_assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `out[m×n] = a[k×m]ᵀ · b[k×n]` (`+=` when `accumulate`).
///
/// This is the weight gradient of a linear layer: `grad_W = grad_yᵀ · x`.
pub(crate) fn matmul_at_b(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    debug_assert!(out.len() >= m * n && a.len() >= k * m && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: as above.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            m as isize,
            1,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }

    #[test]
    fn products_match_naive_loops() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        let mut out = vec![0.0; m * n];
        matmul_ab(&mut out, &a, &b, m, n, k, false);
        assert!(out.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        let bt = transpose(&b, k, n);
        matmul_a_bt(&mut out, &a, &bt, m, n, k, false);
        assert!(out.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        let at = transpose(&a, m, k);
        let mut acc = vec![1.0; m * n];
        matmul_at_b(&mut acc, &at, &b, m, n, k, true);
        assert!(acc.iter().zip(&want).all(|(x, y)| (x - 1.0 - y).abs() < 1e-5));
    }
}
