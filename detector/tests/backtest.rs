//! `omen backtest` end to end: NAB results files, report and plots, on a small synthetic
//! set and (when `../shared/nab` is beside the repository) on the NAB development split and the kpi corpus.

use std::path::{Path, PathBuf};

use omen_detector::backtest::{run, BacktestOptions, Report};
use omen_detector::model::{Driver, SeriesDetectorConfig};

fn options(data: PathBuf, labels: Option<PathBuf>, out: &Path, plots: bool) -> BacktestOptions {
    BacktestOptions {
        data,
        labels,
        out: out.to_owned(),
        name: "omen".to_owned(),
        config: SeriesDetectorConfig::default(),
        plots,
        progress: false,
    }
}

/// Checks one results file against its input: header, one row per input row in order,
/// scores finite in [0, 1].
fn check_results(input: &Path, results: &Path) {
    let input = std::fs::read_to_string(input).unwrap();
    let output = std::fs::read_to_string(results).unwrap();
    let mut lines = output.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    let input_rows: Vec<&str> = input.lines().skip(1).filter(|l| !l.is_empty()).collect();
    let output_rows: Vec<&str> = lines.collect();
    assert_eq!(input_rows.len(), output_rows.len(), "{}", results.display());
    for (input_row, output_row) in input_rows.iter().zip(&output_rows) {
        let fields: Vec<&str> = output_row.split(',').collect();
        let timestamp = input_row.split(',').next().unwrap();
        assert_eq!(fields[0], timestamp);
        let score: f64 = fields[2].parse().unwrap();
        assert!(
            score.is_finite() && (0.0..=1.0).contains(&score),
            "{output_row}"
        );
        assert!(fields[3] == "0" || fields[3] == "1");
    }
}

#[test]
fn writes_nab_results_report_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("synthetic")).unwrap();
    let mut csv = String::from("timestamp,value\n");
    for i in 0..3000i64 {
        let value = 10.0 + (i as f64 / 30.0).sin() + if i == 2500 { 25.0 } else { 0.0 };
        let seconds = 1_400_000_000 + i * 300;
        let (day, second) = (seconds / 86_400, seconds % 86_400);
        // 2014-05-13 is day 16203 since the epoch.
        let date = format!("2014-05-{:02}", 13 + day - 16_203);
        let _ = std::fmt::Write::write_fmt(
            &mut csv,
            format_args!(
                "{date} {:02}:{:02}:{:02},{value}\n",
                second / 3600,
                second % 3600 / 60,
                second % 60
            ),
        );
    }
    let input = data.join("synthetic/wave.csv");
    std::fs::write(&input, &csv).unwrap();
    let spike_row = csv
        .lines()
        .nth(2501)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let window_end = csv
        .lines()
        .nth(2600)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let labels = dir.path().join("windows.json");
    std::fs::write(
        &labels,
        format!(r#"{{"synthetic/wave.csv": [["{spike_row}.000000", "{window_end}.000000"]]}}"#),
    )
    .unwrap();
    let out = dir.path().join("out");
    // Plots need the `plots` feature; without it a run that asks for them is refused.
    let plots = cfg!(feature = "plots");
    if !plots {
        let refused = run(&options(data.clone(), Some(labels.clone()), &out, true));
        assert!(refused.unwrap_err().to_string().contains("plots"));
    }
    let report = run(&options(data, Some(labels), &out, plots)).unwrap();

    check_results(&input, &out.join("omen/synthetic/omen_wave.csv"));
    assert_eq!(report.windows, 1);
    assert_eq!(report.profiles.len(), 3);
    assert_eq!(report.events.as_ref().unwrap().detected, 1);
    // The alarm says why it fired: the spike, far beyond the wave's range.
    let alarm = report.per_series[0]
        .alarms
        .iter()
        .find(|a| a.in_window)
        .expect("an alarm in the window");
    assert_eq!(alarm.timestamp, spike_row);
    assert_eq!(alarm.driver, Some(Driver::BeyondRange));
    let by_range = report
        .drivers
        .iter()
        .find(|d| d.driver == Some(Driver::BeyondRange))
        .unwrap();
    assert_eq!(by_range.first_in_window, 1);
    assert!(report.cross_validated.is_none(), "one category");
    assert!(out.join("omen/report.json").is_file());
    assert_eq!(out.join("omen/index.html").is_file(), plots);
    assert_eq!(out.join("omen/plots/synthetic_wave.svg").is_file(), plots);
}

#[test]
fn rejects_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = options(dir.path().to_owned(), None, dir.path(), false);
    bad.name = "../escape".to_owned();
    assert!(run(&bad).is_err());
}

/// A development corpus of `../shared` (`nab`, `kpi`) backtested with its labels: its
/// folder, the results' folder and the report; `None` when it is not beside the repository.
fn development_corpus(name: &str) -> Option<(PathBuf, tempfile::TempDir, Report)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(name);
    if !corpus.is_dir() {
        println!("skipped: ../shared/{name} not found beside the repository");
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let labels = corpus.join("labels/combined_windows.json");
    let report = run(&options(
        corpus.join("data"),
        Some(labels),
        out.path(),
        false,
    ))
    .unwrap();
    Some((corpus, out, report))
}

#[test]
fn nab_development_split() {
    let Some((nab, out, report)) = development_corpus("nab") else {
        return;
    };
    assert_eq!((report.series, report.windows), (42, 79));
    for entry in [
        "realKnownCause/nyc_taxi",
        "artificialNoAnomaly/art_flatline",
    ] {
        let (category, file) = entry.split_once('/').unwrap();
        check_results(
            &nab.join(format!("data/{entry}.csv")),
            &out.path().join(format!("omen/{category}/omen_{file}.csv")),
        );
    }
    // A regression guard well below the figure in the crate README.
    let standard = report.profiles[0].normalised;
    assert!(standard > 50.0, "standard profile fell to {standard}");
    let folds = &report.cross_validated.as_ref().expect("7 categories")[0].folds;
    assert_eq!(folds.len(), 7);
    println!("{}", report.summary());
}

#[test]
fn kpi_development_corpus() {
    let Some((_, _out, report)) = development_corpus("kpi") else {
        return;
    };
    assert_eq!(report.series, 57);
    // Regression guards below the figures in the crate README, whole-set and
    // cross-validated (each category at a threshold chosen on the others).
    let standard = report.profiles[0].normalised;
    assert!(standard > 40.0, "standard profile fell to {standard}");
    let crossval = report.cross_validated.as_ref().expect("9 categories");
    assert_eq!(crossval[0].folds.len(), 9);
    assert!(crossval[0].normalised > 40.0, "{}", crossval[0].normalised);
    println!("{}", report.summary());
}

#[test]
fn a_bad_setting_is_named_once_however_the_error_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = options(dir.path().join("none"), None, dir.path(), false);
    settings.config.likelihood.min_deviation = 0.0;
    let error = run(&settings).unwrap_err();
    // Alone, and as a chain of sources (what `{:#}` in anyhow prints).
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        chain.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    assert_eq!(
        chain,
        "detector configuration: likelihood.min_deviation must be a positive number, got 0"
    );
}

#[test]
fn a_window_inside_the_probationary_period_is_not_counted() {
    // A flat series never alarms; its one window lies in the first 15% of rows, which
    // NAB does not score. Neither found nor missed: the null detector's score, 0.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("cat")).unwrap();
    let mut csv = String::from("timestamp,value\n");
    for i in 0..1000 {
        let t = omen_detector::series::format_timestamp(1_400_000_000_000 + i * 300_000);
        csv.push_str(&format!("{t},1\n"));
    }
    std::fs::write(data.join("cat/flat.csv"), csv).unwrap();
    let first = omen_detector::series::format_timestamp(1_400_000_000_000);
    let sixth = omen_detector::series::format_timestamp(1_400_000_000_000 + 5 * 300_000);
    let labels = dir.path().join("labels.json");
    std::fs::write(
        &labels,
        format!(r#"{{"cat/flat.csv": [["{first}", "{sixth}"]]}}"#),
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = run(&options(data, Some(labels), &out, false)).unwrap();
    assert_eq!(report.per_series[0].name, "cat/flat");
    assert_eq!(report.windows, 0);
    for profile in &report.profiles {
        assert_eq!(profile.normalised, 0.0, "{profile:?}");
    }
}

#[test]
fn labels_that_name_none_of_the_series_are_refused_before_anything_is_written() {
    // The data directory given one level too deep: series `flat`, keys `cat/flat.csv`.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/cat");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("flat.csv"), "2014-01-01 00:00:00,1\n").unwrap();
    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, r#"{"cat/flat.csv": [], "cat/other.csv": []}"#).unwrap();
    let out = dir.path().join("out");
    let error = run(&options(data.clone(), Some(labels.clone()), &out, false))
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("(keys look like cat/flat.csv, series like flat)"),
        "{error}"
    );
    assert!(!out.exists());
    // From the right folder, the same labels apply.
    run(&options(dir.path().join("data"), Some(labels), &out, false)).unwrap();
}

#[test]
fn results_stay_inside_the_output_folder_whatever_the_series_name() {
    use std::path::Component;
    let out = Path::new("/out");
    for name in [
        r#"m/up{p="/../../../../esc"}"#,
        "../../etc/passwd",
        "./a/./b",
        "realTweets/Twitter_volume_AAPL",
    ] {
        let path = omen_detector::backtest::results_path(out, "omen", name);
        assert!(path.starts_with("/out/omen"), "{name}: {}", path.display());
        let climbs = path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
        assert!(!climbs, "{name}: {}", path.display());
    }
    assert_eq!(
        omen_detector::backtest::results_path(out, "omen", "realTweets/Twitter_volume_AAPL"),
        Path::new("/out/omen/realTweets/omen_Twitter_volume_AAPL.csv")
    );
}

#[test]
fn two_series_that_would_write_one_results_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("x")).unwrap();
    // Read in this order: `a b` (one row), then `a_b` (two rows).
    std::fs::write(data.join("x/a b.csv"), "2014-01-01 00:00:00,1\n").unwrap();
    let two_rows = "2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n";
    std::fs::write(data.join("x/a_b.csv"), two_rows).unwrap();
    let out = dir.path().join("out");
    let error = run(&options(data, None, &out, false))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("series x/a b and x/a_b would both write"),
        "{error}"
    );
    // The first was written (header and one row), and not overwritten by the second.
    let written = std::fs::read_to_string(out.join("omen/x/omen_a_b.csv")).unwrap();
    assert_eq!(written.lines().count(), 2);
}
