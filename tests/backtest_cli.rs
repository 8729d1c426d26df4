//! `omen backtest` from the command line: what a user sees when the input is wrong.

mod common;

/// Runs `omen backtest` with `args` and returns its stderr, asserting it failed.
fn failing_backtest(args: &[&std::ffi::OsStr]) -> String {
    let output = common::omen()
        .arg("backtest")
        .args(args)
        .output()
        .expect("run omen");
    assert!(!output.status.success());
    common::stderr(&output)
}

#[test]
fn errors_name_the_file_and_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("bad.csv");
    std::fs::write(&data, [0xff, 0xfe, b',', b'1', b'\n']).unwrap();
    let error = failing_backtest(&[data.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let cause = "stream did not contain valid UTF-8";
    assert!(error.contains("bad.csv"), "{error}");
    assert_eq!(error.matches(cause).count(), 1, "{error}");

    let config = dir.path().join("missing.yaml");
    let error = failing_backtest(&[
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        error.contains("cannot read") && error.contains("missing.yaml"),
        "{error}"
    );
}

/// Runs `omen backtest` on `data` with `args` and returns the scores it wrote.
fn backtest_scores(data: &std::path::Path, out: &std::path::Path, args: &[&str]) -> String {
    let output = common::omen()
        .arg("backtest")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--name", "omen", "--no-plots"])
        .args(args)
        .output()
        .expect("run omen");
    assert!(output.status.success(), "{}", common::stderr(&output));
    // A single file's category is the directory it is in.
    let category = data.parent().and_then(|p| p.file_name()).unwrap();
    std::fs::read_to_string(out.join("omen").join(category).join("omen_series.csv")).unwrap()
}

#[test]
fn the_configuration_chooses_the_models_unless_the_command_line_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("series.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..800u32 {
        let (day, hour, minute) = (1 + i / 288, i % 288 / 12, i % 12 * 5);
        let spike = if i == 700 { 40.0 } else { 0.0 };
        let value = 10.0 + (f64::from(i) / 9.0).sin() + f64::from(i * 37 % 11) / 10.0 + spike;
        csv += &format!("2024-01-{day:02} {hour:02}:{minute:02}:00,{value}\n");
    }
    std::fs::write(&data, csv).unwrap();
    // The `detector:` section of a detect configuration, as `omen detect` reads it.
    let config = dir.path().join("forest.yaml");
    std::fs::write(&config, "detector: { models: forest_only }\n").unwrap();
    let config = config.to_str().unwrap();
    let out = |name: &str| dir.path().join(name);

    let combined = backtest_scores(&data, &out("combined"), &[]);
    let from_config = backtest_scores(&data, &out("config"), &["--config", config]);
    let from_flag = backtest_scores(&data, &out("flag"), &["--models", "forest"]);
    let overridden = backtest_scores(
        &data,
        &out("overridden"),
        &["--config", config, "--models", "combined"],
    );
    assert_ne!(from_config, combined);
    assert_eq!(from_config, from_flag);
    assert_eq!(overridden, combined);
}

/// The texts of an SVG's `<text>` elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let (_, rest) = element.split_once('>')?;
            let (text, _) = rest.split_once("</text>")?;
            Some(text.trim().to_owned())
        })
        .collect()
}

#[test]
fn plots_have_a_time_axis_a_legend_and_a_png_named_after_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("payments");
    std::fs::create_dir(&data).unwrap();
    let mut csv = String::from("timestamp,value\n");
    for i in 0..800u32 {
        let (day, hour, minute) = (1 + i / 288, i % 288 / 12, i % 12 * 5);
        let shift = if i >= 700 { 30.0 } else { 0.0 };
        let value = 10.0 + (f64::from(i) / 9.0).sin() + f64::from(i * 37 % 11) / 10.0 + shift;
        csv += &format!("2024-01-{day:02} {hour:02}:{minute:02}:00,{value}\n");
    }
    std::fs::write(data.join("latency p99.csv"), csv).unwrap();
    let out = dir.path().join("out");
    let output = common::omen()
        .arg("backtest")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));

    let plots = out.join("omen/plots");
    let svg = std::fs::read_to_string(plots.join("latency_p99.svg")).unwrap();
    let texts = svg_texts(&svg);
    for wanted in [
        "latency p99",
        "time (UTC)",
        "value",
        "expected band",
        "warm-up",
        "alarm",
        "anomaly score",
        "threshold 0.500",
    ] {
        assert!(texts.iter().any(|t| t == wanted), "`{wanted}` in {texts:?}");
    }
    // The x axis is labelled with times of the data, not row numbers.
    let times = texts.iter().filter(|t| t.starts_with("2024-01-0")).count();
    assert!(times >= 4, "{texts:?}");
    let png = std::fs::read(plots.join("latency_p99.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 10_000, "a drawn figure: {} bytes", png.len());

    // The index lists the series with its worst score and the time of its alarm.
    let index = std::fs::read_to_string(out.join("omen/index.html")).unwrap();
    assert!(index.contains("href=\"plots/latency_p99.svg\""), "{index}");
    let alarms = index
        .rsplit("<td>")
        .next()
        .and_then(|cell| cell.split('<').next())
        .unwrap_or_default();
    assert!(
        alarms.starts_with("2024-01-0"),
        "alarm times listed: {index}"
    );
}
