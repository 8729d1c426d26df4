//! Prometheus inputs: a saved `query_range` JSON response (`resultType: matrix`) and text
//! exposition lines that carry timestamps (`name{labels} value timestamp_ms`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::error::IngestError;
use crate::series::{format_timestamp, Series};
use crate::wire::exposition;

/// A series' selector, `name{label="value",…}` with the labels in the order given.
fn selector<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// The selector of a `query_range` result's `metric` (its keys are sorted).
fn metric_selector(metric: &serde_json::Map<String, Value>) -> String {
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels = metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")));
    selector(name, labels)
}

/// Reads every matrix series of a `query_range` response; names are `prefix/selector`.
pub fn read_query_range(text: &str, path: &Path, prefix: &str) -> Result<Vec<Series>, IngestError> {
    let error = |reason: &str| IngestError::QueryRange {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let root: Value = serde_json::from_str(text).map_err(|e| error(&e.to_string()))?;
    if root.get("status").and_then(Value::as_str) == Some("error") {
        let field = |key| root.get(key).and_then(Value::as_str).unwrap_or("");
        return Err(error(&format!(
            "Prometheus answered with an error: {}: {}",
            field("errorType"),
            field("error")
        )));
    }
    let results = root
        .pointer("/data/result")
        .and_then(Value::as_array)
        .ok_or_else(|| error("missing data.result"))?;
    let mut all = Vec::with_capacity(results.len());
    for result in results {
        let metric = result
            .get("metric")
            .and_then(Value::as_object)
            .ok_or_else(|| error("a result has no metric"))?;
        let values = result
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| error("a result has no values (not a matrix)"))?;
        let mut series = Series::new(format!("{prefix}/{}", metric_selector(metric)));
        for pair in values {
            let (Some(seconds), Some(value)) = (
                pair.get(0).and_then(Value::as_f64),
                pair.get(1).and_then(Value::as_str),
            ) else {
                return Err(error("a sample is not [seconds, \"value\"]"));
            };
            let value: f64 = value
                .parse()
                .map_err(|_| error("a sample value is not a number"))?;
            let ms = (seconds * 1000.0).round() as i64;
            series.push(ms, &format_timestamp(ms), value);
        }
        all.push(series);
    }
    Ok(all)
}

/// Reads text exposition (format 0.0.4 or OpenMetrics, parsed as a scrape is) whose
/// samples all carry timestamps: one series per distinct name and label set (labels
/// sorted, so their order as written does not split a series), ordered by selector, each
/// series' samples in file order. A line that does not parse, or a sample without a
/// timestamp, is an error: a backtest must not score part of a file.
pub fn read_text_exposition(
    text: &str,
    path: &Path,
    prefix: &str,
) -> Result<Vec<Series>, IngestError> {
    let exposition = exposition::parse(text);
    if let Some(first) = exposition.first_error {
        return Err(IngestError::Exposition {
            path: path.to_owned(),
            malformed: exposition.malformed,
            first,
        });
    }
    let mut by_selector: BTreeMap<String, Series> = BTreeMap::new();
    for sample in exposition.samples {
        let labels = sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let selector = selector(&sample.name, labels);
        let Some(ms) = sample.timestamp_ms else {
            return Err(IngestError::NoTimestamp {
                path: path.to_owned(),
                selector,
            });
        };
        by_selector
            .entry(selector)
            .or_insert_with_key(|selector| Series::new(format!("{prefix}/{selector}")))
            .push(ms, &format_timestamp(ms), sample.value);
    }
    Ok(by_selector.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_query_range_matrix() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"api"},"values":[[1435781430.781,"1"],[1435781445.781,"0"]]}]}}"#;
        let series = read_query_range(text, Path::new("q.json"), "q").unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "q/up{job=\"api\"}");
        assert_eq!(
            series[0].timestamps_ms,
            [1_435_781_430_781, 1_435_781_445_781]
        );
        assert_eq!(series[0].values, [1.0, 0.0]);
        // Results files repeat the timestamp texts: milliseconds are kept.
        let texts: Vec<&str> = series[0].timestamp_texts().collect();
        assert_eq!(
            texts,
            ["2015-07-01 20:10:30.781", "2015-07-01 20:10:45.781"]
        );
        assert!(read_query_range("{}", Path::new("q.json"), "q").is_err());
    }

    #[test]
    fn text_exposition_needs_timestamps() {
        let ok = "http_requests_total{path=\"/a b\"} 3 1000\nhttp_requests_total{path=\"/a b\"} 5 2000\n";
        let series = read_text_exposition(ok, Path::new("m.prom"), "m").unwrap();
        assert_eq!(series[0].values, [3.0, 5.0]);
        let error = read_text_exposition("up 1\n", Path::new("m.prom"), "m").unwrap_err();
        assert_eq!(
            error.to_string(),
            "m.prom: a sample of up has no timestamp (a backtest needs one per sample)"
        );
    }

    #[test]
    fn text_exposition_is_read_as_a_scrape_is() {
        // Label order, spacing and a trailing comma do not split a series; an exemplar
        // is not part of the value; empty labels are no labels.
        let text = "# TYPE up_total counter\n\
            up_total{b=\"2\",a=\"1\"} 5 2000 # {trace_id=\"x\"} 1 1000\n\
            up_total{ a=\"1\", b=\"2\", } 7 3000\n\
            up_total{a=\"1\",b=\"2\",c=\"\"} 9 4000\n";
        let series = read_text_exposition(text, Path::new("m.prom"), "m").unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "m/up_total{a=\"1\",b=\"2\"}");
        assert_eq!(series[0].values, [5.0, 7.0, 9.0]);
        assert_eq!(series[0].timestamps_ms, [2000, 3000, 4000]);
    }

    #[test]
    fn a_line_of_text_exposition_that_does_not_parse_is_an_error() {
        let text = "up 1 1000\nup{a=1} 2 2000\nup 3 3000 junk\n";
        let error = read_text_exposition(text, Path::new("m.prom"), "m").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(
                "m.prom: 2 lines of text exposition do not parse, the first at line 2: "
            ),
            "{message}"
        );
    }

    #[test]
    fn a_prometheus_error_reply_says_so() {
        let text = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let error = read_query_range(text, Path::new("q.json"), "q").unwrap_err();
        assert_eq!(
            error.to_string(),
            "q.json: not a Prometheus query_range response: Prometheus answered with an error: bad_data: parse error"
        );
    }
}
