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

    let config = dir.path().join("missing.json");
    let error = failing_backtest(&[
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        error.contains("cannot read") && error.contains("missing.json"),
        "{error}"
    );
}
