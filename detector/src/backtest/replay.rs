//! One series replayed through a fresh detector, point by point in time order: the
//! scores, bands and early warnings the live path would have produced, with the time and
//! state it took.

use std::time::{Duration, Instant};

use crate::model::detector::DetectorError;
use crate::model::{Driver, SeriesDetector, SeriesDetectorConfig};
use crate::series::Series;

/// The detector's output for one series, row for row.
#[derive(Debug, Clone)]
pub struct SeriesRun {
    pub series: Series,
    /// Windows as row ranges, from the labels (empty without labels).
    pub windows: Vec<(usize, usize)>,
    pub scores: Vec<f64>,
    /// The band, row for row, when asked for (plots draw it); else empty.
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// First early warning at or after each row, as rows ahead, if any was raised.
    pub warnings: Vec<Option<u32>>,
    /// What drove each row's likelihood, if anything did.
    pub drivers: Vec<Option<Driver>>,
    pub detect_time: Duration,
    pub state_bytes: usize,
    pub snapshot_bytes: usize,
    /// The season the baseline found, in seconds.
    pub season_s: Option<i64>,
}

/// Feeds one series through a fresh detector; keeps the band if `keep_band`.
pub fn detect_series(
    series: Series,
    windows: Vec<(usize, usize)>,
    config: &SeriesDetectorConfig,
    keep_band: bool,
) -> Result<SeriesRun, DetectorError> {
    let mut detector = SeriesDetector::new(config.clone())?;
    let n = series.len();
    let mut run = SeriesRun {
        windows,
        scores: Vec::with_capacity(n),
        lower: Vec::with_capacity(if keep_band { n } else { 0 }),
        upper: Vec::with_capacity(if keep_band { n } else { 0 }),
        warnings: Vec::with_capacity(n),
        drivers: Vec::with_capacity(n),
        detect_time: Duration::ZERO,
        state_bytes: 0,
        snapshot_bytes: 0,
        season_s: None,
        series,
    };
    let started = Instant::now();
    for (&t, &v) in run.series.timestamps_ms.iter().zip(&run.series.values) {
        let score = detector.update(t, v);
        run.scores.push(score.score);
        if keep_band {
            run.lower.push(score.lower);
            run.upper.push(score.upper);
        }
        run.drivers.push(score.driver);
        run.warnings.push(
            score
                .warning
                .map(|w| u32::try_from(w.steps_ahead).unwrap_or(u32::MAX)),
        );
    }
    run.detect_time = started.elapsed();
    run.state_bytes = detector.state_bytes();
    run.season_s = detector.baseline().period_ms().map(|ms| ms / 1000);
    let mut counter = ByteCounter(0);
    run.snapshot_bytes = serde_json::to_writer(&mut counter, &detector).map_or(0, |()| counter.0);
    Ok(run)
}

/// Counts the bytes written to it: a snapshot's size without building the snapshot.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
