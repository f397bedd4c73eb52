//! PNG plots of 2-D data, samples and a learned density, side by side (plotters, no fonts).

use std::path::Path;

use normflow::Matrix;
use plotters::prelude::*;

use crate::commands::CliError;

/// A density evaluated on a `k × k` grid over `[lo, hi]²` (row-major, x fastest).
pub struct DensityGrid {
    /// Log-density per cell centre.
    pub log_prob: Vec<f32>,
    /// Cells per side.
    pub k: usize,
    /// Lower bound of both axes.
    pub lo: f64,
    /// Upper bound of both axes.
    pub hi: f64,
}

/// Cell centres of a `k × k` grid over `[lo, hi]²`, x varying fastest.
pub fn grid_points(k: usize, lo: f64, hi: f64) -> Matrix {
    let h = (hi - lo) / k as f64;
    let pts = (0..k * k).flat_map(|p| [(lo + ((p % k) as f64 + 0.5) * h) as f32, (lo + ((p / k) as f64 + 0.5) * h) as f32]).collect();
    Matrix::from_vec(k * k, 2, pts)
}

fn plot_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> CliError + '_ {
    move |e| CliError::Usage(format!("{}: cannot draw the plot: {e:?}", path.display()))
}

/// A viridis-like colour for `t` in `[0, 1]`.
fn colour(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f) as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Draws data (left), samples (middle) and the density (right) into a PNG at `path`,
/// written atomically (temporary file, then rename).
pub fn data_samples_density(path: &Path, data: &Matrix, samples: &Matrix, density: &DensityGrid) -> Result<(), CliError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".plot-{}.png", std::process::id()));
    let result = draw(&tmp, data, samples, density).and_then(|_| std::fs::rename(&tmp, path).map_err(CliError::Io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw(path: &Path, data: &Matrix, samples: &Matrix, density: &DensityGrid) -> Result<(), CliError> {
    let err = plot_err(path);
    let root = BitMapBackend::new(path, (1500, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let panels = root.split_evenly((1, 3));
    let range = density.lo..density.hi;
    for (panel, points, colour) in [(&panels[0], data, RGBColor(31, 119, 180)), (&panels[1], samples, RGBColor(214, 39, 40))] {
        let mut chart = ChartBuilder::on(panel).margin(12).build_cartesian_2d(range.clone(), range.clone()).map_err(&err)?;
        let pts = (0..points.rows())
            .map(|i| (points.get(i, 0) as f64, points.get(i, 1) as f64))
            .filter(|(x, y)| range.contains(x) && range.contains(y));
        chart.draw_series(pts.map(|p| Circle::new(p, 1, colour.mix(0.5).filled()))).map_err(&err)?;
    }
    let mut chart = ChartBuilder::on(&panels[2]).margin(12).build_cartesian_2d(range.clone(), range).map_err(&err)?;
    let k = density.k;
    let h = (density.hi - density.lo) / k as f64;
    let max = density.log_prob.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let cells = density.log_prob.iter().enumerate().map(|(p, &lp)| {
        let (x, y) = (density.lo + (p % k) as f64 * h, density.lo + (p / k) as f64 * h);
        Rectangle::new([(x, y), (x + h, y + h)], colour(((lp as f64) - max).exp()).filled())
    });
    chart.draw_series(cells).map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// Histograms of the scores of normal rows (blue) and anomalies (red), each normalised to its
/// own count, with the threshold as a black vertical line; a PNG at `path`, written atomically.
pub fn score_histograms(path: &Path, normal: &[f64], anomalies: &[f64], threshold: f64) -> Result<(), CliError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".plot-{}.png", std::process::id()));
    let result = draw_histograms(&tmp, normal, anomalies, threshold).and_then(|_| std::fs::rename(&tmp, path).map_err(CliError::Io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw_histograms(path: &Path, normal: &[f64], anomalies: &[f64], threshold: f64) -> Result<(), CliError> {
    let err = plot_err(path);
    let mut all: Vec<f64> = normal.iter().chain(anomalies).copied().filter(|v| v.is_finite()).collect();
    all.sort_by(f64::total_cmp);
    if all.is_empty() {
        return Err(CliError::Usage("no finite scores to plot".into()));
    }
    // Clip the far tail so one extreme score does not squash the plot.
    let lo = all[0].min(threshold);
    let hi = all[(all.len() - 1) * 999 / 1000].max(threshold) + 1e-9;
    let bins = 60;
    let width = (hi - lo) / bins as f64;
    let hist = |v: &[f64]| -> Vec<f64> {
        let mut h = vec![0.0; bins];
        for &x in v {
            let b = (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
            h[b] += 1.0 / v.len().max(1) as f64;
        }
        h
    };
    let (hn, ha) = (hist(normal), hist(anomalies));
    let top = hn.iter().chain(&ha).cloned().fold(0.0, f64::max) * 1.05 + 1e-9;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root).margin(15).build_cartesian_2d(lo..hi, 0.0..top).map_err(&err)?;
    for (h, colour) in [(&hn, RGBColor(31, 119, 180)), (&ha, RGBColor(214, 39, 40))] {
        let bars = h
            .iter()
            .enumerate()
            .map(|(b, &v)| Rectangle::new([(lo + b as f64 * width, 0.0), (lo + (b + 1) as f64 * width, v)], colour.mix(0.5).filled()));
        chart.draw_series(bars).map_err(&err)?;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new([(threshold - width * 0.05, 0.0), (threshold + width * 0.05, top)], BLACK.filled())))
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}
