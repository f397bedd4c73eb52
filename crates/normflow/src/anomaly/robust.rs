//! Robust trimming of unlabelled training rows: the outliers a detector is meant to find can
//! sit among the rows it learns from, and a flow learns a cluster of them as a mode.

use crate::bijection::whitening::{gaussian_fit, squared_distances};
use crate::engine::Matrix;
use crate::{Error, Result};

/// A row counts as a gross outlier when its robust squared distance exceeds this multiple of
/// the 0.999 quantile of the χ² distribution: far beyond what a Gaussian-like normal population,
/// even one with heavy tails, produces.
const GROSS_FACTOR: f64 = 3.0;

/// The indices (ascending) of the `keep` fraction of rows of `x` most central under a robust
/// Gaussian, by concentration steps (Rousseeuw & Van Driessen 1999) from all rows: fit a
/// Gaussian to the kept rows, keep the rows nearest to it in Mahalanobis distance, repeat until
/// the kept set stops changing (at most 30 steps). Outliers among unlabelled training rows
/// inflate a plain Gaussian, and a flow learns them as modes; trimming them first lets a
/// detector model the normal rows.
///
/// # Errors
/// [`Error::InvalidConfig`] for `keep` outside (0, 1]; [`Error::NotEnoughData`] when fewer
/// than two rows would be kept.
pub fn central_rows(x: &Matrix, keep: f64) -> Result<Vec<usize>> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(Error::config(format!("the fraction of rows to keep must be in (0, 1], got {keep}")));
    }
    let h = ((x.rows() as f64) * keep).ceil() as usize;
    if h < 2 {
        return Err(Error::NotEnoughData(format!("{} rows leave {h} to keep; at least 2 are needed", x.rows())));
    }
    let mut kept: Vec<usize> = (0..x.rows()).collect();
    for _ in 0..30 {
        let (mean, c) = gaussian_fit(&x.select_rows(&kept));
        let dist = squared_distances(x, &mean, &c);
        let mut order: Vec<usize> = (0..x.rows()).collect();
        order.sort_by(|&a, &b| dist[a].total_cmp(&dist[b]));
        let mut next = order[..h].to_vec();
        next.sort_unstable();
        if next == kept {
            break;
        }
        kept = next;
    }
    Ok(kept)
}

/// The indices (ascending) of the rows of `x` that are not gross outliers under a robust
/// Gaussian, trimming at most the `1 − keep` share of rows.
///
/// The Gaussian is fitted on the `keep` share of rows by concentration steps (see
/// [`central_rows`]) and rescaled so that the median squared distance of all rows is the χ²
/// median (the usual consistency correction); a row is dropped when its squared distance passes
/// `GROSS_FACTOR` times the χ² 0.999 quantile. Clusters of far outliers (as in ODDS shuttle)
/// go; a merely unusual normal row (a zero-inflated column, a skewed tail, as in pima) stays for
/// the flow to model. When more rows than the `1 − keep` share qualify, the `keep` share most
/// central stays.
///
/// # Errors
/// As [`central_rows`].
pub fn without_gross_outliers(x: &Matrix, keep: f64) -> Result<Vec<usize>> {
    let central = central_rows(x, keep)?;
    let (mean, c) = gaussian_fit(&x.select_rows(&central));
    let mut dist = squared_distances(x, &mean, &c);
    let dim = x.cols() as f64;
    let mut sorted = dist.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    if median > 0.0 && median.is_finite() {
        let scale = chi2_quantile(0.0, dim) / median;
        dist.iter_mut().for_each(|d| *d *= scale);
    }
    let cutoff = GROSS_FACTOR * chi2_quantile(Z_999, dim);
    let kept: Vec<usize> = (0..x.rows()).filter(|&i| dist[i] <= cutoff).collect();
    Ok(if kept.len() < central.len() { central } else { kept })
}

/// The standard normal quantile at 0.999.
const Z_999: f64 = 3.090_232_306_167_813;

/// The quantile of χ² with `k` degrees of freedom at the probability whose standard normal
/// quantile is `z` (Wilson–Hilferty: within 4% for k ≥ 1 at the quantiles used here).
fn chi2_quantile(z: f64, k: f64) -> f64 {
    let v = 2.0 / (9.0 * k);
    k * (1.0 - v + z * v.sqrt()).powi(3).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2_quantiles_match_tables() {
        // Reference values from standard χ² tables.
        for (z, k, want) in [
            (0.0, 8.0, 7.344),
            (Z_999, 8.0, 26.124),
            (Z_999, 2.0, 13.816),
            (Z_999, 1.0, 10.828),
            (0.0, 30.0, 29.336),
            (Z_999, 30.0, 59.703),
        ] {
            let got = chi2_quantile(z, k);
            assert!((got / want - 1.0).abs() < 0.04, "χ² quantile at z = {z}, {k} degrees: {got}, table {want}");
        }
    }
}
