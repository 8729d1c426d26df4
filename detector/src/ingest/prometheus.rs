//! Prometheus inputs: a saved `query_range` JSON response (`resultType: matrix`) and text
//! exposition lines that carry timestamps (`name{labels} value timestamp_ms`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::IngestError;
use crate::series::{format_timestamp, Series};

fn selector(metric: &serde_json::Map<String, Value>) -> String {
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// Reads every matrix series of a `query_range` response; names are `prefix/selector`.
pub fn read_query_range(text: &str, path: &Path, prefix: &str) -> Result<Vec<Series>, IngestError> {
    let error = |reason: &str| IngestError::QueryRange {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let root: Value = serde_json::from_str(text).map_err(|e| error(&e.to_string()))?;
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
        let mut series = Series::new(format!("{prefix}/{}", selector(metric)));
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

/// Reads text exposition samples with timestamps, one series per distinct
/// `name{labels}` (ordered by it), each series' samples in file order.
pub fn read_text_exposition(
    text: &str,
    path: &Path,
    prefix: &str,
) -> Result<Vec<Series>, IngestError> {
    let mut by_selector: BTreeMap<String, Series> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason: &str| IngestError::Parse {
            path: path.to_owned(),
            line: index + 1,
            reason: reason.to_owned(),
        };
        // Label values may hold spaces: the selector ends at the closing brace if any.
        let (selector, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').ok_or_else(|| error("unclosed label set"))?;
                line.split_at(close + 1)
            }
            None => line.split_at(line.find(char::is_whitespace).unwrap_or(line.len())),
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| error("missing value"))?
            .parse::<f64>()
            .map_err(|_| error("value is not a number"))?;
        let ms = fields
            .next()
            .ok_or_else(|| error("missing timestamp (a backtest needs one per sample)"))?
            .parse::<i64>()
            .map_err(|_| error("timestamp is not integer milliseconds"))?;
        by_selector
            .entry(selector.to_owned())
            .or_insert_with(|| Series::new(format!("{prefix}/{selector}")))
            .push(ms, &format_timestamp(ms), value);
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
        assert!(read_text_exposition("up 1\n", Path::new("m.prom"), "m").is_err());
    }
}
