//! Rules that are wrong without an error: `omen agent test` names each mistake on the
//! input it is given, and `--strict` exits 1 on it. One case per silent mistake an
//! operator made with exit 0 before: a label or a `match` on a misspelt field, a label on
//! a capture the rule's regex does not define, a text field used as a counter's value,
//! `rules: []`, and lines the parser cannot read.

mod common;

use std::path::Path;
use std::process::Output;

const LOGFMT: &str = "level=info provider=stripe status=200 amount=12 msg=charged
level=info provider=adyen status=500 amount=7 msg=charged
level=warn provider=stripe status=200 amount=3 msg=refunded
";

/// `omen agent test --rules R --input F` (with `--strict` if asked) on `rules` and `input`.
fn agent_test(dir: &Path, rules: &str, input: &str, strict: bool) -> Output {
    let (rules_path, input_path) = (dir.join("rules.yaml"), dir.join("input.log"));
    std::fs::write(&rules_path, rules).unwrap();
    std::fs::write(&input_path, input).unwrap();
    let mut command = common::omen();
    command.args(["agent", "test", "--rules"]).arg(&rules_path);
    command.arg("--input").arg(&input_path);
    if strict {
        command.arg("--strict");
    }
    command.output().unwrap()
}

/// The mistake is reported without `--strict` (exit 0, metrics still printed) and fails
/// the run with it (exit 1); every `wanted` text is in the report.
fn assert_reported(rules: &str, input: &str, wanted: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let lenient = agent_test(dir.path(), rules, input, false);
    let report = common::stderr(&lenient);
    assert_eq!(lenient.status.code(), Some(0), "{report}");
    for text in wanted {
        assert!(report.contains(text), "`{text}` in:\n{report}");
    }
    let strict = agent_test(dir.path(), rules, input, true);
    assert_eq!(strict.status.code(), Some(1), "{}", common::stderr(&strict));
    assert_eq!(strict.stdout, lenient.stdout, "the same metrics either way");
}

#[test]
fn a_label_from_a_misspelt_field_is_named_with_the_field_meant() {
    assert_reported(
        "rules:
  - { name: charges_total, type: counter, match: { msg: charged }, labels: { provider: provder } }
",
        LOGFMT,
        &["field `provder` is read by the rules but no record has it; did you mean `provider`?"],
    );
}

#[test]
fn a_match_on_a_misspelt_field_is_named_and_its_rule_matched_nothing() {
    assert_reported(
        "rules:
  - { name: refunds_total, type: counter, match: { mgs: refunded } }
  - { name: charges_total, type: counter, match: { msg: charged } }
",
        LOGFMT,
        &[
            "field `mgs` is read by the rules but no record has it; did you mean `msg`?",
            "rule `refunds_total` matched no record",
        ],
    );
}

#[test]
fn a_label_on_a_capture_the_regex_does_not_define_is_named() {
    assert_reported(
        r#"parser: { format: none }
rules:
  - name: responses_total
    type: counter
    pattern: 'status=(?P<code>\d+)'
    labels: { status: cod }
"#,
        LOGFMT,
        &["field `cod` is read by the rules but no record has it"],
    );
}

#[test]
fn a_text_field_as_a_counter_value_is_named() {
    assert_reported(
        "rules:
  - { name: charged_amount_total, type: counter, match: { msg: charged }, value: provider }
",
        LOGFMT,
        &["rule `charged_amount_total`: 2 matching records had a value that is not a number"],
    );
}

#[test]
fn an_empty_rules_list_is_named() {
    assert_reported("rules: []\n", LOGFMT, &["the rules file has no rules"]);
}

#[test]
fn lines_the_parser_cannot_read_are_counted_and_shown() {
    let input = "{\"msg\": \"charged\", \"provider\": \"stripe\"}
not json at all
{\"msg\": \"charged\", \"provider\": \"adyen\"}
[1, 2]
";
    assert_reported(
        "parser: { format: json }
rules:
  - { name: charges_total, type: counter, match: { msg: charged }, labels: { provider: provider } }
",
        input,
        &[
            "2 of 4 records did not parse",
            "record 2 (",
            "not json at all",
        ],
    );
}

#[test]
fn right_rules_on_their_input_are_clean_and_cases_can_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "rules:
  - { name: charges_total, type: counter, match: { msg: charged }, labels: { provider: provider } }
  - { name: refunds_total, type: counter, match: { msg: refunded } }
";
    let output = agent_test(dir.path(), rules, LOGFMT, true);
    let report = common::stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("3 records, 0 warning(s)"), "{report}");

    // Cases assert `errors` and `unmatched`; a wrong count fails with the audit's findings.
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:
  - name: clean
    input: |
      level=info provider=stripe msg=charged
    errors: 0
    unmatched: 0
    expect: [{ metric: charges_total, labels: { provider: stripe }, value: 1 }]
  - name: one line nobody counts
    input: |
      level=info provider=stripe msg=charged
      level=debug msg=heartbeat
    unmatched: 0
",
    )
    .unwrap();
    let output = common::omen()
        .args(["agent", "test", "--rules"])
        .arg(dir.path().join("rules.yaml"))
        .arg("--cases")
        .arg(&cases)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("case `one line nobody counts`: unmatched"),
        "{text}"
    );
    assert!(text.contains("msg=heartbeat"), "{text}");
    assert!(!text.contains("case `clean`"), "{text}");
}

#[test]
fn every_rule_that_does_not_parse_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent_test(
        dir.path(),
        "rules:
  - { name: fine_total, type: counter, match: { msg: charged } }
  - { name: latency, type: histogram, value: ms, buckets: [1, fast] }
  - { name: typo_total, type: countr }
",
        LOGFMT,
        false,
    );
    assert_eq!(output.status.code(), Some(2));
    let error = common::stderr(&output);
    for wanted in [
        "rules[1] (`latency`): field `buckets[1]`: invalid type: string \"fast\"",
        "rules[2] (`typo_total`): ",
        "countr",
    ] {
        assert!(error.contains(wanted), "`{wanted}` in {error}");
    }
    assert!(!error.contains("rules[0]"), "{error}");
}

#[test]
fn every_invalid_rule_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent_test(
        dir.path(),
        "rules:
  - { name: latency, type: histogram, value: ms, buckets: [1, 0.5] }
  - { name: fine_total, type: counter, match: { msg: charged } }
  - { name: fine_total, type: counter, match: { msg: refunded } }
  - { name: bad_regex_total, type: counter, pattern: '(unclosed' }
",
        LOGFMT,
        false,
    );
    assert_eq!(output.status.code(), Some(2));
    let error = common::stderr(&output);
    for wanted in [
        "rule `latency`: field `buckets`",
        "rule `fine_total`: field `name`: another rule has this name",
        "rule `bad_regex_total`: field `pattern`",
    ] {
        assert!(error.contains(wanted), "`{wanted}` in {error}");
    }
}
