//! Anomaly and out-of-distribution detection with exact likelihoods: a score (the negative
//! log-likelihood), a threshold calibrated on held-out normal rows, and the detector metrics.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod robust;

pub use robust::{central_rows, without_gross_outliers};

/// Most calibration scores kept in a model (an evenly spaced subset of the sorted scores beyond
/// that, enough for percentiles to 1e-4).
const MAX_CALIBRATION: usize = 10_000;

/// A score threshold calibrated on held-out normal rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Rows scoring above this are flagged.
    pub threshold: f64,
    /// The quantile of the calibration scores the threshold sits at (1 − contamination).
    pub quantile: f64,
    /// Sorted calibration scores (possibly an evenly spaced subset).
    pub calibration: Vec<f32>,
}

impl Threshold {
    /// The `quantile` of `scores` (negative log-likelihoods of held-out normal rows).
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] without scores; [`Error::InvalidConfig`] for a quantile outside
    /// (0, 1) or non-finite scores.
    pub fn calibrate(scores: &[f32], quantile: f64) -> Result<Self> {
        if scores.is_empty() {
            return Err(Error::NotEnoughData("no calibration rows to set the threshold".into()));
        }
        if !(quantile > 0.0 && quantile < 1.0) || scores.iter().any(|s| !s.is_finite()) {
            return Err(Error::config("the threshold quantile must be in (0, 1) and scores finite"));
        }
        let mut sorted = scores.to_vec();
        sorted.sort_by(f32::total_cmp);
        let pos = quantile * (sorted.len() - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos.fract());
        let hi = (lo + 1).min(sorted.len() - 1);
        let threshold = sorted[lo] as f64 + frac * (sorted[hi] as f64 - sorted[lo] as f64);
        if sorted.len() > MAX_CALIBRATION {
            let n = sorted.len();
            sorted = (0..MAX_CALIBRATION).map(|k| sorted[k * (n - 1) / (MAX_CALIBRATION - 1)]).collect();
        }
        Ok(Self { threshold, quantile, calibration: sorted })
    }

    /// Percentage of calibration scores at or below `score` (0–100).
    pub fn percentile(&self, score: f32) -> f64 {
        let below = self.calibration.partition_point(|&c| c <= score);
        100.0 * below as f64 / self.calibration.len().max(1) as f64
    }

    /// Whether `score` is flagged.
    pub fn flags(&self, score: f32) -> bool {
        score as f64 > self.threshold
    }
}

/// Area under the ROC curve of `scores` (higher = more anomalous) for `labels` (true =
/// anomaly), with ties counted half. `None` unless both classes occur.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (pos, neg) = (labels.iter().filter(|&&l| l).count(), labels.iter().filter(|&&l| !l).count());
    if pos == 0 || neg == 0 {
        return None;
    }
    // Mann–Whitney U from average ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[idx[k]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64))
}

/// Average precision (area under the precision–recall curve, step-wise) of `scores` for
/// `labels`. `None` without anomalies.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut ap) = (0usize, 0.0);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1;
            ap += tp as f64 / (k + 1) as f64;
        }
    }
    Some(ap / pos as f64)
}

/// Counts of a thresholded detector against labels (positive = anomaly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Anomalies flagged.
    pub true_positives: usize,
    /// Normal rows flagged.
    pub false_positives: usize,
    /// Normal rows not flagged.
    pub true_negatives: usize,
    /// Anomalies missed.
    pub false_negatives: usize,
}

impl Confusion {
    /// Counts for `flags` against `labels`.
    pub fn new(flags: &[bool], labels: &[bool]) -> Self {
        let mut c = Confusion::default();
        for (&f, &l) in flags.iter().zip(labels) {
            match (f, l) {
                (true, true) => c.true_positives += 1,
                (true, false) => c.false_positives += 1,
                (false, false) => c.true_negatives += 1,
                (false, true) => c.false_negatives += 1,
            }
        }
        c
    }

    /// TP / (TP + FP), 0 when nothing is flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// TP / (TP + FN), 0 without anomalies.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = [false, false, true, true];
        assert!((auroc(&scores, &labels).unwrap() - 0.75).abs() < 1e-12);
        // Ranked: 0.8 (+), 0.4 (−), 0.35 (+), 0.1 (−): AP = (1/1 + 2/3) / 2.
        assert!((average_precision(&scores, &labels).unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(auroc(&[1.0, 1.0], &[true, false]), Some(0.5), "ties count half");
        assert_eq!(auroc(&[1.0], &[true]), None);
        let c = Confusion::new(&[true, false, true, false], &labels);
        assert_eq!((c.true_positives, c.false_positives, c.true_negatives, c.false_negatives), (1, 1, 1, 1));
        assert!((c.f1() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn threshold_quantile_and_percentiles() {
        let scores: Vec<f32> = (0..101).map(|v| v as f32).collect();
        let t = Threshold::calibrate(&scores, 0.99).unwrap();
        assert!((t.threshold - 99.0).abs() < 1e-9);
        assert!(t.flags(99.5) && !t.flags(99.0));
        assert!((t.percentile(50.0) - 100.0 * 51.0 / 101.0).abs() < 1e-9);
        assert!(Threshold::calibrate(&[], 0.9).is_err() && Threshold::calibrate(&[1.0], 1.0).is_err());
    }
}
