//! A linear layer's forward pass, `x · Wᵀ + b` (then ReLU when asked), choosing how the product
//! runs from the layer's shape.

use super::activation::bias_relu;
use super::matmul::matmul_a_bt;
use super::small_linear;

/// `out = x · Wᵀ + b` for `rows` rows of `x` (`fan_in` wide), the weight `[fan_out, fan_in]` with
/// `fan_out = b.len()`, clipped at zero when `relu`; `out` (`rows × fan_out`) is overwritten.
///
/// One product, then one pass for the bias and activation. (A transposed product for layers
/// with fewer outputs than a vector's lanes measured no faster on Zen 5:
/// `bench/results/2026-12-02-ab-narrow-outputs-quiet-zen5.txt`.)
pub(crate) fn linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], rows: usize, fan_in: usize, relu: bool) {
    let fan_out = b.len();
    if small_linear::active() && small_linear::fits(fan_in, fan_out) {
        return small_linear::small_linear(out, x, w, b, rows, fan_in, relu);
    }
    matmul_a_bt(out, x, w, rows, fan_out, fan_in, false);
    bias_relu(&mut out[..rows * fan_out], b, relu);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_and_wide_layers_match_the_formula() {
        let (rows, fan_in) = (326, 9);
        let x: Vec<f32> = (0..rows * fan_in).map(|i| ((i * 37) % 23) as f32 * 0.25 - 2.5).collect();
        for fan_out in [1, 3, 8, 16, 21] {
            let w: Vec<f32> = (0..fan_out * fan_in).map(|i| ((i * 11) % 13) as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..fan_out).map(|j| j as f32 - 4.0).collect();
            for relu in [false, true] {
                let mut out = vec![f32::NAN; rows * fan_out];
                linear(&mut out, &x, &w, &b, rows, fan_in, relu);
                for r in 0..rows {
                    for j in 0..fan_out {
                        let a: f32 = (0..fan_in).map(|i| x[r * fan_in + i] * w[j * fan_in + i]).sum::<f32>() + b[j];
                        let want = if relu { a.max(0.0) } else { a };
                        assert_eq!(out[r * fan_out + j], want, "{fan_out} outputs, row {r}, output {j}, relu {relu}");
                    }
                }
            }
        }
    }
}
