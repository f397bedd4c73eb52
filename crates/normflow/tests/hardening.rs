//! Regression tests named after what a new user's trial broke in the library.

use normflow::bijection::{Bijection, Standardize};
use normflow::flows::RealNvpConfig;
use normflow::{Error, Matrix, Rng, MAX_ABS_VALUE};

/// `rows` rows of columns drawn as `N(mean_j, std_j)`.
fn gaussian_columns(rows: usize, columns: &[(f64, f64)], seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let data = (0..rows).flat_map(|_| columns.iter().map(|&(m, s)| (m + s * rng.normal()) as f32).collect::<Vec<_>>()).collect();
    Matrix::from_vec(rows, columns.len(), data)
}

#[test]
fn a_varying_column_beside_a_large_one_is_not_called_constant() {
    let x = gaussian_columns(500, &[(1e6, 1e5), (0.5, 0.01)], 0);
    let mut s = Standardize::new(2);
    let z = s.data_init(&x, None).expect("both columns vary");
    let (m, v) = column_stats(&z, 1);
    assert!(m.abs() < 1e-3 && (v - 1.0).abs() < 1e-3, "column b standardised: mean {m}, variance {v}");
}

#[test]
fn one_huge_value_does_not_blame_another_column() {
    let mut x = gaussian_columns(500, &[(0.0, 1.0), (0.5, 0.01)], 1);
    x.set(17, 0, 1e10);
    let mut s = Standardize::new(2);
    s.data_init(&x, None).expect("column a varies (it has one huge value) and column b varies");
    // A truly constant column is still named, by its own position.
    let mut c = gaussian_columns(500, &[(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)], 2);
    (0..500).for_each(|i| c.set(i, 2, 1e6));
    c.set(3, 0, 1e10);
    match Standardize::new(3).data_init(&c, None) {
        Err(Error::ConstantColumn { column }) => assert_eq!(column, 3),
        other => panic!("expected column 3 to be constant, got {other:?}"),
    }
}

fn column_stats(x: &Matrix, j: usize) -> (f64, f64) {
    let n = x.rows() as f64;
    let m = (0..x.rows()).map(|i| x.get(i, j) as f64).sum::<f64>() / n;
    (m, (0..x.rows()).map(|i| (x.get(i, j) as f64 - m).powi(2)).sum::<f64>() / n)
}

#[test]
fn values_too_large_for_f32_arithmetic_are_refused_with_row_and_column() {
    let flow = RealNvpConfig::new(2).with_layers(2).with_hidden(vec![8]).init(&mut Rng::new(0)).unwrap();
    for v in [1e30f32, -1e30, MAX_ABS_VALUE * 2.0] {
        let x = Matrix::from_vec(3, 2, vec![0.0, 0.0, 0.0, v, 0.0, 0.0]);
        for result in [flow.log_prob(&x, None).map(|_| ()), flow.encode(&x, None).map(|_| ()), flow.decode(&x, None).map(|_| ())] {
            match result {
                Err(Error::ValueTooLarge { row: 2, column: 2, .. }) => {}
                other => panic!("expected a refusal at row 2, column 2, got {other:?}"),
            }
        }
    }
    let ok = Matrix::from_vec(1, 2, vec![MAX_ABS_VALUE, -MAX_ABS_VALUE]);
    assert!(flow.log_prob(&ok, None).is_ok(), "the limit itself is accepted");
}
