//! Plots an operator reads: one figure per series, as SVG and PNG, named after the series
//! (`realTweets_Twitter_volume_IBM.svg`), and an `index.html` listing the series by their
//! worst score with the times of their alarms.
//!
//! Each figure has time (UTC) on the x axis and a legend. Above: the value, its expected
//! band, labelled windows shaded, the warm-up shaded grey, alarms as red dots and early
//! warnings as orange triangles. Below: the anomaly score with the alarm threshold. The
//! threshold is the one the scoring chose when there are labels, else the detector's own
//! `alarm_level`. Long series are bucketed to at most [`MAX_POINTS`] points per line (the
//! score keeps each bucket's maximum, so no alarm disappears).
//!
//! PNG text needs a font: the first of a few common system sans fonts found is used; with
//! none, the PNG is skipped (and the index says so), the SVG is always written.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::BacktestError;
use super::replay::SeriesRun;
use super::report::Report;
use crate::series::format_rfc3339;

const MAX_POINTS: usize = 1500;
const SIZE: (u32, u32) = (1200, 600);
/// Alarm times listed per series in the index.
const LISTED_ALARMS: usize = 10;
/// Where a sans font is looked for, for the PNG's text.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// What one figure shows, beyond the run itself.
#[derive(Debug, Clone, Copy)]
pub struct Marks {
    /// Scores at or above it are alarms.
    pub threshold: f64,
    /// Rows the detector learns before it may alarm.
    pub warmup_rows: usize,
}

struct Bucketed {
    x: Vec<f64>,
    value: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    score: Vec<f64>,
}

/// Milliseconds since the epoch as an x coordinate; rows beyond the timestamps (none in
/// practice) continue from the last one.
fn time_of(run: &SeriesRun, row: usize) -> f64 {
    let times = &run.series.timestamps_ms;
    times
        .get(row)
        .or(times.last())
        .map_or(row as f64, |&t| t as f64)
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
    let finite = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    for start in (0..n).step_by(size) {
        let end = (start + size).min(n);
        let values = finite(&run.series.values[start..end]);
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        out.x.push(time_of(run, start));
        out.value.push(mean);
        let band = |v: &[f64]| finite(v.get(start..end).unwrap_or_default());
        out.lower
            .push(band(&run.lower).into_iter().fold(f64::INFINITY, f64::min));
        out.upper.push(
            band(&run.upper)
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

/// `2024-01-05 13:40` for an x coordinate.
fn time_label(x: &f64) -> String {
    let text = format_rfc3339(*x as i64);
    text.get(..16).unwrap_or(&text).replace('T', " ")
}

/// Rows whose score is an alarm, and rows where an early warning is raised.
fn alarm_rows(run: &SeriesRun, marks: Marks) -> (Vec<usize>, Vec<usize>) {
    let alarms = (marks.warmup_rows..run.scores.len())
        .filter(|&row| run.scores[row] >= marks.threshold)
        .collect();
    let warnings = run
        .warnings
        .iter()
        .enumerate()
        .filter(|(_, ahead)| **ahead == Some(0))
        .map(|(row, _)| row)
        .collect();
    (alarms, warnings)
}

/// Draws the legend of `chart`'s labelled series in its upper left corner.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// What both panels of a figure share: the time range, the value range, where the
/// labelled windows, the warm-up, the alarms and the early warnings are.
struct Frame {
    data: Bucketed,
    first: f64,
    last: f64,
    low: f64,
    high: f64,
    windows: Vec<(f64, f64)>,
    warmup_end: f64,
    alarms: Vec<usize>,
    warnings: Vec<usize>,
}

const WINDOW: RGBAColor = RGBAColor(255, 200, 120, 0.35);
const WARMUP: RGBAColor = RGBAColor(160, 160, 160, 0.25);

impl Frame {
    fn new(run: &SeriesRun, marks: Marks) -> Self {
        let data = bucket(run);
        let (first, last) = (time_of(run, 0), time_of(run, run.scores.len().max(1) - 1));
        let (mut low, mut high) = data
            .value
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        let span = (high - low).max(1e-9);
        let (alarms, warnings) = alarm_rows(run, marks);
        Self {
            data,
            first,
            last: last.max(first + 1.0),
            low: low - 0.25 * span,
            high: high + 0.25 * span,
            windows: run
                .windows
                .iter()
                .map(|&(a, b)| (time_of(run, a), time_of(run, b + 1)))
                .collect(),
            warmup_end: time_of(run, marks.warmup_rows.min(run.scores.len())),
            alarms,
            warnings,
        }
    }

    /// A value inside the drawn range (off-range and missing values at its edge).
    fn clamp(&self, v: f64) -> f64 {
        if v.is_finite() {
            v.clamp(self.low, self.high)
        } else {
            self.low
        }
    }
}

/// Draws one series' figure on `root` (any backend); `path` names it in errors.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    path: &Path,
    run: &SeriesRun,
    marks: Marks,
) -> Result<(), BacktestError> {
    let frame = Frame::new(run, marks);
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let (top, bottom) = root.split_vertically(400);
    draw_values(&top, path, run, &frame)?;
    draw_scores(&bottom, path, &frame, marks.threshold)?;
    root.present().map_err(|e| plot_error(path, e))
}

/// The upper panel: value, band, windows, warm-up, alarms and early warnings.
fn draw_values<DB: DrawingBackend>(
    top: &DrawingArea<DB, Shift>,
    path: &Path,
    run: &SeriesRun,
    frame: &Frame,
) -> Result<(), BacktestError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let Frame {
        data,
        first,
        last,
        low,
        high,
        windows,
        warmup_end,
        alarms,
        warnings,
    } = frame;
    let (first, last, low, high, warmup_end) = (*first, *last, *low, *high, *warmup_end);
    let clamp = |v: f64| frame.clamp(v);
    let (window_colour, warmup_colour) = (WINDOW, WARMUP);
    let x_range = first..last;
    let mut chart = ChartBuilder::on(top)
        .caption(&run.series.name, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), low..high)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .x_label_formatter(&time_label)
        .y_desc("value")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(first, low), (warmup_end, high)],
            warmup_colour.filled(),
        )))
        .map_err(|e| err(&e))?
        .label("warm-up")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 16, y + 5)], warmup_colour.filled())
        });
    if !windows.is_empty() {
        chart
            .draw_series(
                windows
                    .iter()
                    .map(|&(a, b)| Rectangle::new([(a, low), (b, high)], window_colour.filled())),
            )
            .map_err(|e| err(&e))?
            .label("labelled window")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], window_colour.filled())
            });
    }
    let band = RGBColor(120, 160, 220);
    for (index, line) in [&data.lower, &data.upper].into_iter().enumerate() {
        let drawn = chart
            .draw_series(LineSeries::new(
                data.x.iter().zip(line.iter()).map(|(&x, &y)| (x, clamp(y))),
                band.mix(0.7),
            ))
            .map_err(|e| err(&e))?;
        if index == 0 {
            drawn
                .label("expected band")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], band));
        }
    }
    chart
        .draw_series(LineSeries::new(
            data.x.iter().zip(&data.value).map(|(&x, &y)| (x, clamp(y))),
            BLACK,
        ))
        .map_err(|e| err(&e))?
        .label("value")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
    let value_at = |row: usize| clamp(run.series.values.get(row).copied().unwrap_or(low));
    chart
        .draw_series(
            alarms
                .iter()
                .map(|&row| Circle::new((time_of(run, row), value_at(row)), 3, RED.filled())),
        )
        .map_err(|e| err(&e))?
        .label("alarm")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, RED.filled()));
    let orange = RGBColor(240, 140, 0);
    chart
        .draw_series(warnings.iter().map(|&row| {
            TriangleMarker::new((time_of(run, row), value_at(row)), 5, orange.filled())
        }))
        .map_err(|e| err(&e))?
        .label("early warning")
        .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, orange.filled()));
    legend(&mut chart).map_err(|e| err(&e))?;

    Ok(())
}

/// The lower panel: the anomaly score, windows, warm-up and the threshold.
fn draw_scores<DB: DrawingBackend>(
    bottom: &DrawingArea<DB, Shift>,
    path: &Path,
    frame: &Frame,
    threshold: f64,
) -> Result<(), BacktestError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let Frame {
        data,
        first,
        last,
        windows,
        warmup_end,
        ..
    } = frame;
    let (first, last, warmup_end) = (*first, *last, *warmup_end);
    let (window_colour, warmup_colour) = (WINDOW, WARMUP);
    let x_range = first..last;
    let mut scores = ChartBuilder::on(bottom)
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0.0..1.05)
        .map_err(|e| err(&e))?;
    scores
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .x_label_formatter(&time_label)
        .x_desc("time (UTC)")
        .y_desc("score")
        .draw()
        .map_err(|e| err(&e))?;
    scores
        .draw_series(
            std::iter::once(Rectangle::new(
                [(first, 0.0), (warmup_end, 1.05)],
                warmup_colour.filled(),
            ))
            .chain(
                windows
                    .iter()
                    .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, 1.05)], window_colour.filled())),
            ),
        )
        .map_err(|e| err(&e))?;
    scores
        .draw_series(LineSeries::new(
            data.x.iter().zip(&data.score).map(|(&x, &y)| (x, y)),
            RED,
        ))
        .map_err(|e| err(&e))?
        .label("anomaly score")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    scores
        .draw_series(LineSeries::new(
            [(first, threshold), (last, threshold)],
            BLUE.mix(0.6),
        ))
        .map_err(|e| err(&e))?
        .label(format!("threshold {threshold:.3}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.mix(0.6)));
    legend(&mut scores).map_err(|e| err(&e))
}

/// Draws one series into `svg`, and into `png` when a font for its text was found.
pub fn plot_series(
    svg: &Path,
    png: Option<&Path>,
    run: &SeriesRun,
    marks: Marks,
) -> Result<(), BacktestError> {
    draw(
        &SVGBackend::new(svg, SIZE).into_drawing_area(),
        svg,
        run,
        marks,
    )?;
    if let Some(png) = png {
        draw(
            &BitMapBackend::new(png, SIZE).into_drawing_area(),
            png,
            run,
            marks,
        )?;
    }
    Ok(())
}

/// Registers the first system sans font found for bitmap text; false with none.
fn register_font() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        FONTS.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // The font lives as long as the process: plotters keeps a reference to it.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A file name for a series: its name with anything but letters, digits, `.`, `-` and
/// `_` made `_`, its input extension dropped; a second series with the same name gets
/// its index appended.
fn file_stem(name: &str, index: usize, taken: &mut HashSet<String>) -> String {
    let base = name
        .strip_suffix(".csv")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    let mut stem: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if stem.is_empty() || !taken.insert(stem.clone()) {
        stem = format!("{stem}-{index}");
        taken.insert(stem.clone());
    }
    stem
}

/// Writes every series' figures into `dir`/plots and an `index.html` in `dir` listing
/// the series by their worst score, with their alarm times.
pub fn write_all(
    dir: &Path,
    runs: &[SeriesRun],
    report: &Report,
    marks: Marks,
) -> Result<(), BacktestError> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|source| BacktestError::Write {
        path: plots.clone(),
        source,
    })?;
    let marks = Marks {
        threshold: report
            .profiles
            .first()
            .map_or(marks.threshold, |p| p.threshold),
        ..marks
    };
    let png = register_font();
    let mut html = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>omen backtest</title>\
         <style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top}</style>",
    );
    let _ = write!(
        html,
        "<h1>omen backtest: {}</h1><pre>{}</pre><p>Series by their worst score; an alarm is a score of {:.3} or more after the first {} rows.{}</p>",
        html_escape(&report.name),
        html_escape(&report.summary()),
        marks.threshold,
        marks.warmup_rows,
        if png { "" } else { " No font was found for PNG text: SVG only." }
    );
    html.push_str("<table><tr><th>series</th><th>worst score</th><th>rows</th><th>windows</th><th>detected</th><th>false alarms</th><th>alarms (UTC)</th></tr>");
    let mut order: Vec<usize> = (0..runs.len()).collect();
    let worst = |run: &SeriesRun| run.scores.iter().copied().fold(0.0, f64::max);
    order.sort_by(|&a, &b| worst(&runs[b]).total_cmp(&worst(&runs[a])));
    let mut taken = HashSet::new();
    let stems: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| file_stem(&run.series.name, index, &mut taken))
        .collect();
    for index in order {
        let run = &runs[index];
        let stem = &stems[index];
        let svg = plots.join(format!("{stem}.svg"));
        let png_path = plots.join(format!("{stem}.png"));
        plot_series(&svg, png.then_some(png_path.as_path()), run, marks)?;
        let (alarms, _) = alarm_rows(run, marks);
        let mut times: Vec<String> = alarms
            .iter()
            .take(LISTED_ALARMS)
            .map(|&row| time_label(&time_of(run, row)))
            .collect();
        if alarms.len() > LISTED_ALARMS {
            times.push(format!("and {} more", alarms.len() - LISTED_ALARMS));
        }
        let summary = report.per_series.get(index);
        let png_link = if png {
            format!(" (<a href=\"plots/{stem}.png\">png</a>)")
        } else {
            String::new()
        };
        let _ = write!(
            html,
            "<tr><td><a href=\"plots/{stem}.svg\">{}</a>{png_link}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&run.series.name),
            worst(run),
            run.scores.len(),
            run.windows.len(),
            summary.map_or(0, |s| s.detected),
            summary.map_or(0, |s| s.false_alarms),
            html_escape(&times.join(", ")),
        );
    }
    html.push_str("</table>");
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(|source| BacktestError::Write {
        path: index,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_files_are_named_after_the_series_and_never_twice() {
        let mut taken = HashSet::new();
        assert_eq!(
            file_stem("realTweets/Twitter_volume_IBM.csv", 0, &mut taken),
            "realTweets_Twitter_volume_IBM"
        );
        assert_eq!(
            file_stem("realTweets/Twitter_volume_IBM.csv", 1, &mut taken),
            "realTweets_Twitter_volume_IBM-1"
        );
        assert_eq!(file_stem("up{job=\"api\"}", 2, &mut taken), "up_job__api__");
        assert_eq!(file_stem("", 3, &mut taken), "-3");
    }
}
