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

/// Full-covariance Gaussian log-density of the rows of `test`, fitted (maximum likelihood) on
/// the rows of `train`, in f64.
fn gaussian_log_prob(train: &Matrix, test: &Matrix) -> Vec<f64> {
    let (n, d) = (train.rows() as f64, train.cols());
    let mean: Vec<f64> = (0..d).map(|j| (0..train.rows()).map(|i| train.get(i, j) as f64).sum::<f64>() / n).collect();
    let mut cov = vec![0.0; d * d];
    for i in 0..train.rows() {
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] += (train.get(i, a) as f64 - mean[a]) * (train.get(i, b) as f64 - mean[b]) / n;
            }
        }
    }
    // Cholesky, then solve for each row.
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s = cov[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            l[i * d + j] = if i == j { s.sqrt() } else { s / l[j * d + j] };
        }
    }
    let log_det: f64 = (0..d).map(|i| l[i * d + i].ln()).sum();
    (0..test.rows())
        .map(|r| {
            let mut y = vec![0.0; d];
            for i in 0..d {
                y[i] = (test.get(r, i) as f64 - mean[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
            }
            -0.5 * y.iter().map(|v| v * v).sum::<f64>() - log_det - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln()
        })
        .collect()
}

/// Rows of a correlated 4-D Gaussian at very different scales.
fn correlated_rows(rows: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let data = (0..rows)
        .flat_map(|_| {
            let (a, b, c, e) = (rng.normal(), rng.normal(), rng.normal(), rng.normal());
            [1e3 * a + 5e3, 0.01 * (a + 0.5 * b), -3.0 * (b - c) + 1.0, 0.2 * (a + b + c + e)].map(|v| v as f32)
        })
        .collect();
    Matrix::from_vec(rows, 4, data)
}

#[test]
fn an_untrained_preset_is_the_full_covariance_gaussian_of_its_data() {
    use normflow::flows::{MafConfig, NsfConfig};
    let (train, test) = (correlated_rows(300, 3), correlated_rows(50, 4));
    let gaussian = gaussian_log_prob(&train, &test);
    for mut flow in [
        RealNvpConfig::new(4).init(&mut Rng::new(0)).unwrap(),
        MafConfig::new(4).init(&mut Rng::new(0)).unwrap(),
        NsfConfig::new(4).init(&mut Rng::new(0)).unwrap(),
        NsfConfig::new(4).with_autoregressive(true).init(&mut Rng::new(0)).unwrap(),
    ] {
        flow.data_init(&train, None).unwrap();
        let lp = flow.log_prob(&test, None).unwrap();
        for (a, b) in lp.iter().zip(&gaussian) {
            assert!((*a as f64 - b).abs() < 2e-3 * b.abs().max(1.0), "{}: {a} vs the Gaussian's {b}", flow.meta.name);
        }
    }
}

#[test]
fn training_on_a_tiny_table_never_ends_worse_than_the_gaussian() {
    use normflow::flows::NsfConfig;
    use normflow::train::{fit, FitConfig};
    // 60 rows of a Gaussian: any gain a flow finds on its 6 validation rows is noise.
    let (train, test) = (correlated_rows(60, 5), correlated_rows(2000, 6));
    let gaussian = gaussian_log_prob(&train, &test);
    let gaussian_nll = -gaussian.iter().sum::<f64>() / gaussian.len() as f64;
    for flow in [RealNvpConfig::new(4).init(&mut Rng::new(0)).unwrap(), NsfConfig::new(4).init(&mut Rng::new(0)).unwrap()] {
        let name = flow.meta.name.clone();
        let (flow, _) = fit(flow, &train, None, &FitConfig::default(), &mut |_| {}).unwrap();
        let lp = flow.log_prob(&test, None).unwrap();
        let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64;
        assert!(nll <= gaussian_nll + 1e-3, "{name}: test NLL {nll} against the Gaussian's {gaussian_nll}");
    }
}

#[test]
fn one_column_data_trains_with_a_spline_flow_that_beats_the_gaussian() {
    use normflow::flows::{MafConfig, NsfConfig};
    use normflow::train::{fit, FitConfig};
    // Log-normal: skewed, entropy μ + 1/2 + ln(σ√(2π)) = 0.5 + ln(0.5·√(2π)) ≈ 0.7258.
    let draw = |n: usize, seed: u64| {
        let mut rng = Rng::new(seed);
        Matrix::from_vec(n, 1, (0..n).map(|_| (0.5 * rng.normal()).exp() as f32).collect())
    };
    let (train, test) = (draw(4000, 7), draw(4000, 8));
    let gaussian = -gaussian_log_prob(&train, &test).iter().sum::<f64>() / 4000.0;
    for err in [RealNvpConfig::new(1).init(&mut Rng::new(0)).unwrap_err(), MafConfig::new(1).init(&mut Rng::new(0)).unwrap_err()] {
        assert!(err.to_string().contains("--flow nsf"), "{err}");
    }
    let flow = NsfConfig::new(1).with_layers(2).with_hidden(vec![16]).init(&mut Rng::new(0)).unwrap();
    let (flow, _) = fit(flow, &train, None, &FitConfig { lr: 2e-3, ..FitConfig::default() }, &mut |_| {}).unwrap();
    let nll = -flow.log_prob(&test, None).unwrap().iter().map(|&v| v as f64).sum::<f64>() / 4000.0;
    eprintln!("1-D log-normal: NSF {nll:.4}, Gaussian {gaussian:.4}, entropy 0.7258");
    assert!(nll < gaussian - 0.05 && nll < 0.7258 + 0.05, "NSF {nll} against the Gaussian's {gaussian}");
}

#[test]
fn unlabelled_outliers_are_trimmed_before_an_anomaly_fit() {
    // 930 rows of a correlated Gaussian and a tight cluster of 70 outliers at moderate distance,
    // near enough to inflate a plain Gaussian that then counts them as normal.
    let mut rng = Rng::new(11);
    let mut data = Vec::new();
    for i in 0..1000 {
        let (a, b) = (rng.normal(), rng.normal());
        let row = if i % 100 < 7 { [3.0 + 0.1 * a, -3.0 + 0.1 * b] } else { [a, 0.8 * a + 0.6 * b] };
        data.extend(row.map(|v| v as f32));
    }
    let x = Matrix::from_vec(1000, 2, data);
    let kept = normflow::anomaly::central_rows(&x, 0.9).unwrap();
    assert_eq!(kept.len(), 900);
    let outliers_kept = kept.iter().filter(|&&i| i % 100 < 7).count();
    assert_eq!(outliers_kept, 0, "every outlier is trimmed");
    assert!(normflow::anomaly::central_rows(&x, 0.0).is_err() && normflow::anomaly::central_rows(&x, 1.5).is_err());
    // Only the gross outliers go: the cluster, and at most a few of the 930 normal rows.
    let kept = normflow::anomaly::without_gross_outliers(&x, 0.9).unwrap();
    assert_eq!(kept.iter().filter(|&&i| i % 100 < 7).count(), 0, "every outlier is trimmed");
    assert!(kept.len() >= 925, "{} of 930 normal rows kept", kept.len());
}

#[test]
fn a_zero_inflated_column_is_not_trimmed_as_outliers() {
    // As pima's insulin column: 30% zeros (missing values) beside N(100, 20) readings. The zeros
    // are part of the normal population; the trim fraction is only a cap.
    let mut rng = Rng::new(5);
    let mut data = Vec::new();
    for i in 0..2000 {
        let reading = if i % 10 < 3 { 0.0 } else { 100.0 + 20.0 * rng.normal() };
        data.extend([reading as f32, rng.normal() as f32]);
    }
    let x = Matrix::from_vec(2000, 2, data);
    let kept = normflow::anomaly::without_gross_outliers(&x, 0.9).unwrap();
    assert!(kept.len() >= 1980, "{} of 2000 rows kept", kept.len());
    assert_eq!(normflow::anomaly::central_rows(&x, 0.9).unwrap().len(), 1800, "the fixed-share trim drops 10% regardless");
}

#[test]
fn smoothing_fits_the_density_widened_by_its_kernel() {
    use normflow::train::{fit, FitConfig};
    // N(0, I) data smoothed with h = 0.75: the fitted density is N(0, (1 + h²) I), whose samples
    // have variance 1.5625 per column; without smoothing the variance stays near 1.
    let x = gaussian_columns(4000, &[(0.0, 1.0), (0.0, 1.0)], 9);
    for (h, want) in [(None, 1.0), (Some(0.75), 1.5625)] {
        let flow = RealNvpConfig::new(2).with_layers(2).with_hidden(vec![16]).init(&mut Rng::new(0)).unwrap();
        let config = FitConfig { max_epochs: 5, smoothing: h, ..FitConfig::default() };
        let (flow, _) = fit(flow, &x, None, &config, &mut |_| {}).unwrap();
        let samples = flow.sample(20_000, None, &mut Rng::new(1)).unwrap();
        for j in 0..2 {
            let (_, var) = column_stats(&samples, j);
            assert!((var / want - 1.0).abs() < 0.06, "smoothing {h:?}, column {j}: variance {var}, want {want}");
        }
    }
    let flow = RealNvpConfig::new(2).init(&mut Rng::new(0)).unwrap();
    let err = fit(flow, &x, None, &FitConfig { smoothing: Some(-1.0), ..FitConfig::default() }, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("smoothing"), "{err}");
}

#[test]
fn residual_conditioners_refuse_hidden_sizes_they_would_ignore() {
    use normflow::flows::NsfConfig;
    let uneven = NsfConfig::new(4).with_hidden(vec![64, 32]).with_residual_blocks(2).init(&mut Rng::new(0)).unwrap_err();
    assert!(uneven.to_string().contains("[64, 32]"), "{uneven}");
    assert!(NsfConfig::new(4).with_hidden(vec![32, 32]).with_residual_blocks(2).init(&mut Rng::new(0)).is_ok());
}
