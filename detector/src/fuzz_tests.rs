//! Byte-level fuzzing of what the detector core reads from outside (`omen_common::fuzz`;
//! `OMEN_FUZZ_CASES`, `OMEN_FUZZ_SEED`): scrape bodies, `timestamp,value` CSV and NAB's
//! label windows for `omen backtest`, OTLP requests and a case's span CSV for `omen rca`.
//! Every input is refused with an error or taken; none panics, and what is taken goes on
//! through a series detector or the trace assembler and scorer.

use std::path::Path;

use omen_common::fuzz::fuzz;

use crate::model::{SeriesDetector, SeriesDetectorConfig};
use crate::traces::assemble::{AssemblerLimits, TraceAssembler};
use crate::traces::{anomalous::TraceScorer, otlp, Names, Span};

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[test]
fn fuzz_scrape_bodies() {
    let text_format = b"# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",path=\"/a\\\"b\"} 1027 1700000000000\nhttp_requests_total{code=\"500\"} 3\n# TYPE latency_seconds histogram\nlatency_seconds_bucket{le=\"0.5\"} 3\nlatency_seconds_bucket{le=\"+Inf\"} 9\nlatency_seconds_sum 4.5\nlatency_seconds_count 9\nqueue_depth NaN\n";
    let openmetrics = b"# TYPE jobs counter\n# UNIT jobs_seconds seconds\njobs_total{kind=\"x\"} 4.0e2 1700000000.5\njobs_created 1700000000.0\n# TYPE temp gauge\ntemp{room=\"a\"} -3.5\n# EOF\n";
    fuzz(
        "a scrape body",
        vec![text_format.to_vec(), openmetrics.to_vec()],
        |body| {
            let exposition = crate::wire::exposition::parse(&text(body));
            !exposition.samples.is_empty()
        },
    );
}

#[test]
fn fuzz_series_csv() {
    let mut nab = String::from("timestamp,value\n");
    for i in 0..60 {
        let value = if i == 45 {
            900.0
        } else {
            20.0 + f64::from(i % 7)
        };
        nab.push_str(&format!(
            "2014-04-01 {:02}:{:02}:00,{value}\n",
            i / 12,
            (i % 12) * 5
        ));
    }
    let unix = "1700000000,1.5\r\n1700000060,\"2.5\"\r\n1700000120,-1e3\r\n";
    let config = SeriesDetectorConfig::default();
    fuzz(
        "a series CSV",
        vec![nab.into_bytes(), unix.as_bytes().to_vec()],
        |bytes| match crate::ingest::read_csv(&text(bytes), Path::new("f.csv"), "f") {
            Ok(series) => {
                let mut detector = SeriesDetector::new(config.clone()).expect("defaults");
                for (&at, &value) in series.timestamps_ms.iter().zip(&series.values) {
                    let score = detector.update(at, value);
                    assert!((0.0..=1.0).contains(&score.score), "{score:?}");
                }
                true
            }
            Err(_) => false,
        },
    );
}

#[test]
fn fuzz_history_files() {
    let query_range = br#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up","job":"api"},"values":[[1700000000,"1"],[1700000015.5,"0"]]},
        {"metric":{"job":"web"},"values":[[1700000000,"NaN"],[1700000015,"+Inf"]]}]}}"#;
    let exposition = b"up{job=\"api\"} 1 1700000000000\nup{job=\"api\"} 0 1700000015000\nqueue_depth 3 1700000000000\n";
    fuzz(
        "a history file",
        vec![query_range.to_vec(), exposition.to_vec()],
        |bytes| {
            let (text, path) = (text(bytes), Path::new("history"));
            let read = if bytes.first() == Some(&b'{') {
                crate::ingest::read_query_range(&text, path, "h")
            } else {
                crate::ingest::read_text_exposition(&text, path, "h")
            };
            read.is_ok_and(|series| !series.is_empty())
        },
    );
}

#[test]
fn fuzz_nab_label_windows() {
    let windows = br#"{
    "realKnownCause/a.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]],
    "artificialNoAnomaly/b.csv": [],
    "c/d.csv": [["2014-04-10 07:15:00", "2014-04-10 07:20:00"], ["2014-04-12 00:00:00.5", "2014-04-12 01:00:00"]]
}"#;
    fuzz("NAB label windows", vec![windows.to_vec()], |bytes| {
        crate::backtest::nab::Windows::parse(&text(bytes), "windows.json").is_ok()
    });
}

/// Spans through the assembler and the trace scorer, as the live pipeline and `omen rca`
/// use them.
fn assemble_and_score(spans: Vec<Span>, assembler: &mut TraceAssembler, scorer: &mut TraceScorer) {
    let mut done = Vec::new();
    for span in spans {
        assembler.push(span, &mut done);
    }
    assembler.finish(&mut done);
    for trace in &done {
        if let Some(score) = scorer.score(trace) {
            assert!(score.is_finite(), "{score}");
        }
    }
}

#[test]
fn fuzz_otlp_requests() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
      "scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /cart","kind":2,
         "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000009000000",
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}],"status":{"code":2}},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b174",
         "name":"POST /pay","kind":3,"startTimeUnixNano":"1700000000001000000","endTimeUnixNano":"1700000000008000000"}]}]},
      {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"pay"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"bbb19b7ec3c1b174",
         "parentSpanId":"aaa19b7ec3c1b174","name":"POST /pay","kind":2,
         "startTimeUnixNano":"1700000000002000000","endTimeUnixNano":"1700000000007000000"}]}]}]}"#;
    let request: ExportTraceServiceRequest = serde_json::from_slice(json).expect("OTLP/JSON");
    let mut names = Names::default();
    let mut assembler = TraceAssembler::new(AssemblerLimits::default());
    let mut scorer = TraceScorer::new();
    fuzz(
        "an OTLP request",
        vec![json.to_vec(), request.encode_to_vec()],
        |body| {
            let decoded = if body.first() == Some(&b'{') {
                otlp::decode_json(body, &mut names)
            } else {
                otlp::decode_protobuf(body, &mut names)
            };
            match decoded {
                Ok(decoded) => {
                    let taken = !decoded.spans.is_empty();
                    assemble_and_score(decoded.spans, &mut assembler, &mut scorer);
                    taken
                }
                Err(_) => false,
            }
        },
    );
}

#[test]
fn fuzz_case_span_files() {
    let spans = "trace_id,span_id,parent_span_id,service,pod,operation,start_unix_nano,duration_nano,status_code\n\
        5b8efff798038103d269b633813fc60c,eee19b7ec3c1b174,,web,web-1,GET /cart,1700000000000000000,9000000,Ok\n\
        5b8efff798038103d269b633813fc60c,aaa19b7ec3c1b174,eee19b7ec3c1b174,pay,pay-2,\"POST /pay, retried\",1700000000001000000,7000000,Error\n";
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("spans.csv");
    let mut names = Names::default();
    let mut assembler = TraceAssembler::new(AssemblerLimits::default());
    let mut scorer = TraceScorer::new();
    fuzz(
        "a case's spans.csv",
        vec![spans.as_bytes().to_vec()],
        |bytes| {
            std::fs::write(&path, bytes).expect("a temporary file");
            match crate::traces::case::read_spans(&path, &mut names) {
                Ok(spans) => {
                    let taken = !spans.is_empty();
                    assemble_and_score(spans, &mut assembler, &mut scorer);
                    taken
                }
                Err(_) => false,
            }
        },
    );
}
