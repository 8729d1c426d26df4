//! Plots: one SVG per series (value, expected band, label windows shaded; anomaly score
//! with the chosen threshold below) and an `index.html` linking them. Long series are
//! bucketed to at most [`MAX_POINTS`] points per line (score: the bucket's maximum, so no
//! alarm disappears).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::error::BacktestError;
use super::replay::SeriesRun;
use super::report::Report;

const MAX_POINTS: usize = 1500;

struct Bucketed {
    x: Vec<f64>,
    value: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    score: Vec<f64>,
}

fn bucket(run: &SeriesRun) -> Bucketed {
    let n = run.scores.len();
    let size = n.div_ceil(MAX_POINTS).max(1);
    let mut out = Bucketed {
        x: Vec::new(),
        value: Vec::new(),
        lower: Vec::new(),
        upper: Vec::new(),
        score: Vec::new(),
    };
    for start in (0..n).step_by(size) {
        let end = (start + size).min(n);
        let finite = |v: &[f64]| {
            v.iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect::<Vec<_>>()
        };
        let values = finite(&run.series.values[start..end]);
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        out.x.push(start as f64);
        out.value.push(mean);
        out.lower.push(
            finite(&run.lower[start..end])
                .into_iter()
                .fold(f64::INFINITY, f64::min),
        );
        out.upper.push(
            finite(&run.upper[start..end])
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max),
        );
        out.score
            .push(run.scores[start..end].iter().copied().fold(0.0, f64::max));
    }
    out
}

fn plot_error(path: &Path, error: impl std::fmt::Display) -> BacktestError {
    BacktestError::Write {
        path: path.to_owned(),
        source: std::io::Error::other(error.to_string()),
    }
}

/// Draws one series into `path`.
pub fn plot_series(
    path: &Path,
    run: &SeriesRun,
    threshold: Option<f64>,
) -> Result<(), BacktestError> {
    let data = bucket(run);
    let n = run.scores.len().max(1) as f64;
    // The y range covers the values, and the band only where it stays near them.
    let finite_values: Vec<f64> = data
        .value
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (mut low, mut high) = finite_values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let span = (high - low).max(1e-9);
    let (low, high) = (low - 0.25 * span, high + 0.25 * span);
    let clamp = |v: f64| {
        if v.is_finite() {
            v.clamp(low, high)
        } else {
            low
        }
    };

    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let (top, bottom) = root.split_vertically(380);
    let mut chart = ChartBuilder::on(&top)
        .caption(&run.series.name, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(20)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, low..high)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .draw()
        .map_err(|e| plot_error(path, e))?;
    let shade = RGBColor(255, 200, 120).mix(0.35);
    chart
        .draw_series(run.windows.iter().map(|&(first, last)| {
            Rectangle::new(
                [(first as f64, low), (last as f64 + 1.0, high)],
                shade.filled(),
            )
        }))
        .map_err(|e| plot_error(path, e))?;
    let band = RGBColor(120, 160, 220);
    for line in [&data.lower, &data.upper] {
        chart
            .draw_series(LineSeries::new(
                data.x.iter().zip(line.iter()).map(|(&x, &y)| (x, clamp(y))),
                band.mix(0.7),
            ))
            .map_err(|e| plot_error(path, e))?;
    }
    chart
        .draw_series(LineSeries::new(
            data.x.iter().zip(&data.value).map(|(&x, &y)| (x, clamp(y))),
            BLACK,
        ))
        .map_err(|e| plot_error(path, e))?;

    let mut scores = ChartBuilder::on(&bottom)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..1.05)
        .map_err(|e| plot_error(path, e))?;
    scores
        .configure_mesh()
        .disable_mesh()
        .y_desc("score")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    scores
        .draw_series(run.windows.iter().map(|&(first, last)| {
            Rectangle::new(
                [(first as f64, 0.0), (last as f64 + 1.0, 1.05)],
                shade.filled(),
            )
        }))
        .map_err(|e| plot_error(path, e))?;
    scores
        .draw_series(LineSeries::new(
            data.x.iter().zip(&data.score).map(|(&x, &y)| (x, y)),
            RED,
        ))
        .map_err(|e| plot_error(path, e))?;
    if let Some(threshold) = threshold {
        scores
            .draw_series(LineSeries::new(
                [(0.0, threshold), (n, threshold)],
                BLUE.mix(0.6),
            ))
            .map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes every series' SVG into `dir` and an `index.html` linking them.
pub fn write_all(dir: &Path, runs: &[SeriesRun], report: &Report) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(|source| BacktestError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let threshold = report.profiles.first().map(|p| p.threshold);
    let mut html = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>omen backtest</title>\
         <style>body{font-family:sans-serif}td,th{padding:2px 8px}</style>",
    );
    let _ = write!(
        html,
        "<h1>omen backtest: {}</h1><pre>{}</pre>",
        html_escape(&report.name),
        html_escape(&report.summary())
    );
    html.push_str("<table><tr><th>series</th><th>rows</th><th>windows</th><th>detected</th><th>false alarms</th></tr>");
    for (index, run) in runs.iter().enumerate() {
        let file = format!("{index:03}.svg");
        plot_series(&dir.join(&file), run, threshold)?;
        let summary = report.per_series.get(index);
        let _ = write!(
            html,
            "<tr><td><a href=\"{file}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&run.series.name),
            run.scores.len(),
            run.windows.len(),
            summary.map_or(0, |s| s.detected),
            summary.map_or(0, |s| s.false_alarms),
        );
    }
    html.push_str("</table>");
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(|source| BacktestError::Write {
        path: index,
        source,
    })
}
