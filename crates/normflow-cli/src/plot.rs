//! PNG plots with titles, labelled axes and legends: 2-D data, samples and a learned density side
//! by side, and the score histograms of an anomaly detector. Drawn in memory (plotters, with a
//! font embedded in the binary) and written atomically like every other output.

use std::path::Path;
use std::sync::Once;

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

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);

/// Registers the embedded font (Ubuntu Light) as plotters' sans-serif, once per process.
fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
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

/// An axis label: plain with one decimal, or in scientific notation beyond ±1e5.
fn short_number(v: f64) -> String {
    if v != 0.0 && !(1e-2..1e5).contains(&v.abs()) {
        format!("{v:.1e}")
    } else {
        format!("{v:.1}")
    }
}

/// Draws into an RGB buffer of `size` with `draw`, then writes it to `path` as a PNG (atomically).
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), CliError> {
    register_font();
    let failed = |e: &dyn std::fmt::Display| CliError::Usage(format!("{}: cannot draw the plot: {e}", path.display()));
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root).map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    normflow::io::write_atomic(path, |w| {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(w).write_image(&rgb, size.0, size.1, image::ColorType::Rgb8).map_err(|e| failed(&e))
    })
}

/// Draws data (left), samples (middle) and the density (right) into a PNG at `path`, each
/// panel titled, with labelled axes (`names` of the two columns).
pub fn data_samples_density(path: &Path, names: [&str; 2], data: &Matrix, samples: &Matrix, density: &DensityGrid) -> Result<(), CliError> {
    render(path, (1500, 520), |root| {
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        let range = density.lo..density.hi;
        let titled = |panel, title: &str| -> Result<_, Box<dyn std::error::Error>> {
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(range.clone(), range.clone())?;
            chart.configure_mesh().disable_mesh().x_desc(names[0]).y_desc(names[1]).label_style(("sans-serif", 13)).draw()?;
            Ok(chart)
        };
        for (panel, points, colour, title) in
            [(&panels[0], data, BLUE, "training data"), (&panels[1], samples, RED, "samples from the flow")]
        {
            let mut chart = titled(panel, title)?;
            let pts = (0..points.rows())
                .map(|i| (points.get(i, 0) as f64, points.get(i, 1) as f64))
                .filter(|(x, y)| range.contains(x) && range.contains(y));
            chart.draw_series(pts.map(|p| Circle::new(p, 1, colour.mix(0.5).filled())))?;
        }
        let mut chart = titled(&panels[2], "learned density (brighter: higher)")?;
        let k = density.k;
        let h = (density.hi - density.lo) / k as f64;
        let max = density.log_prob.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let cells = density.log_prob.iter().enumerate().map(|(p, &lp)| {
            let (x, y) = (density.lo + (p % k) as f64 * h, density.lo + (p / k) as f64 * h);
            Rectangle::new([(x, y), (x + h, y + h)], colour(((lp as f64) - max).exp()).filled())
        });
        chart.draw_series(cells)?;
        Ok(())
    })
}

/// Histograms of the scores of normal rows (blue) and anomalies (red), each normalised to its
/// own count, with the threshold as a black vertical line, a title, axis labels and a legend;
/// a PNG at `path`.
pub fn score_histograms(path: &Path, normal: &[f64], anomalies: &[f64], threshold: f64) -> Result<(), CliError> {
    // Saturated scores (f32::MAX: beyond f32's range) fall in the last bin, like the far tail.
    let mut all: Vec<f64> = normal.iter().chain(anomalies).copied().filter(|v| v.is_finite() && *v < f32::MAX as f64).collect();
    all.sort_by(f64::total_cmp);
    if all.is_empty() {
        return Err(CliError::Usage(format!("{}: no finite scores to plot", path.display())));
    }
    // Clip the far tail so a few extreme scores do not squash the plot: the last bin holds them.
    let lo = all[0].min(threshold);
    let hi = all[(all.len() - 1) * 99 / 100].max(threshold) + 1e-9;
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
    render(path, (900, 520), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption("anomaly scores by class", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("score (negative log-likelihood, nats; the last bin holds everything beyond)")
            .x_labels(8)
            .x_label_formatter(&|v| short_number(*v))
            .y_desc("fraction of the class's rows")
            .label_style(("sans-serif", 13))
            .draw()?;
        for (h, colour, label) in
            [(&hn, BLUE, format!("normal rows ({})", normal.len())), (&ha, RED, format!("anomalies ({})", anomalies.len()))]
        {
            let bars = h
                .iter()
                .enumerate()
                .map(|(b, &v)| Rectangle::new([(lo + b as f64 * width, 0.0), (lo + (b + 1) as f64 * width, v)], colour.mix(0.5).filled()));
            chart
                .draw_series(bars)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.5).filled()));
        }
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(threshold - width * 0.05, 0.0), (threshold + width * 0.05, top)],
                BLACK.filled(),
            )))?
            .label(format!("threshold {threshold:.3}"))
            .legend(|(x, y)| Rectangle::new([(x + 6, y - 6), (x + 8, y + 6)], BLACK.filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 14)).draw()?;
        Ok(())
    })
}

/// Log-mel spectrograms side by side (one panel per `(title, frames)`, frames as rows of bands),
/// time in seconds across (`hop_seconds` per frame) and mel band up, on one shared colour scale
/// (brighter: louder); a PNG at `path`.
pub fn spectrograms(path: &Path, panels: &[(&str, &Matrix)], hop_seconds: f64) -> Result<(), CliError> {
    let values = || panels.iter().flat_map(|(_, m)| m.as_slice().iter().map(|&v| v as f64)).filter(|v| v.is_finite());
    let hi = values().fold(f64::NEG_INFINITY, f64::max);
    // 80 dB below the loudest cell is as dark as it gets (the log floor of silence is lower).
    let lo = values().fold(f64::INFINITY, f64::min).max(hi - 80.0 / 20.0 * std::f64::consts::LN_10);
    if !(hi.is_finite() && lo.is_finite()) {
        return Err(CliError::Usage(format!("{}: no finite spectrogram values to draw", path.display())));
    }
    let span = (hi - lo).max(1e-9);
    let width = 520 * panels.len() as u32;
    render(path, (width, 420), |root| {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, (title, frames)) in areas.iter().zip(panels) {
            let seconds = (frames.rows().max(1)) as f64 * hop_seconds;
            let bands = frames.cols();
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(0.0..seconds, 0.0..bands as f64)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("time (s)")
                .y_desc("mel band")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 13))
                .draw()?;
            let cells = (0..frames.rows()).flat_map(|f| {
                (0..bands).map(move |b| {
                    let (t, v) = (f as f64 * hop_seconds, frames.get(f, b) as f64);
                    let level = if v.is_finite() { ((v - lo) / span).clamp(0.0, 1.0) } else { 0.0 };
                    Rectangle::new([(t, b as f64), (t + hop_seconds, b as f64 + 1.0)], colour(level).filled())
                })
            });
            chart.draw_series(cells)?;
        }
        Ok(())
    })
}
