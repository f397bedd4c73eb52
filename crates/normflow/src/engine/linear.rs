//! A linear layer's forward pass, `x · Wᵀ + b` (then ReLU when asked), choosing how the product
//! runs from the layer's shape.

use super::activation::{bias_relu, bias_relu_from_columns};
use super::isa::Isa;
use super::matmul::{matmul_a_bt, matmul_a_bt_transposed};

/// `out = x · Wᵀ + b` for `rows` rows of `x` (`fan_in` wide), the weight `[fan_out, fan_in]` with
/// `fan_out = b.len()`, clipped at zero when `relu`; `out` (`rows × fan_out`) is overwritten.
///
/// A layer with fewer outputs than one vector's lanes (the few parameters of a small coupling
/// layer, the velocity of a low-dimensional continuous flow) runs its product transposed, so
/// that the lanes run along the rows (see [`matmul_a_bt_transposed`]); the bias pass reads the
/// transposed result.
pub(crate) fn linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], rows: usize, fan_in: usize, relu: bool) {
    let fan_out = b.len();
    if fan_out < Isa::detect().lanes() {
        // Blocks of rows through a buffer on the stack: nothing to allocate or to cache.
        let mut columns = [0.0f32; NARROW_BLOCK * 16];
        for start in (0..rows).step_by(NARROW_BLOCK) {
            let n = NARROW_BLOCK.min(rows - start);
            let columns = &mut columns[..n * fan_out];
            matmul_a_bt_transposed(columns, &x[start * fan_in..], w, n, fan_out, fan_in);
            bias_relu_from_columns(&mut out[start * fan_out..(start + n) * fan_out], columns, b, relu);
        }
    } else {
        matmul_a_bt(out, x, w, rows, fan_out, fan_in, false);
        bias_relu(&mut out[..rows * fan_out], b, relu);
    }
}

/// Rows per product of a narrow layer: a block's transposed result (at most 16 outputs) is
/// 16 KiB.
const NARROW_BLOCK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_and_wide_layers_match_the_formula() {
        let (rows, fan_in) = (NARROW_BLOCK + 70, 9);
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
