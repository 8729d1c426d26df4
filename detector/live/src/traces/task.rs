//! The task between the receivers' queue and the engine: feeds queued spans to the
//! pipeline, and every second completes idle traces, hands the span series to the engine
//! and the learnt call edges to correlation.

use std::sync::Arc;
use std::time::Duration;

use omen_detector::traces::Span;
use tokio::sync::mpsc;

use super::Traces;
use crate::engine::{Mode, Origin};
use crate::state::{now_ms, LiveState};

/// Feeds queued spans to the pipeline and, every second, ticks it and hands its series to
/// the engine. Runs until the queue closes.
pub async fn run(traces: Arc<Traces>, mut queue: mpsc::Receiver<Vec<Span>>, state: Arc<LiveState>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            batch = queue.recv() => match batch {
                Some(spans) => {
                    let n = spans.len();
                    traces.pipeline().push(spans);
                    traces.dequeued(n);
                }
                None => return,
            },
            _ = ticker.tick() => step(&traces, &state, now_ms(), Mode::Live),
        }
    }
}

/// One tick at `now_ms`: completes idle traces, hands new call edges to correlation and,
/// when the interval is up, the span series to the engine. The demo calls it in simulated
/// time.
pub fn step(traces: &Traces, state: &LiveState, now_ms: i64, mode: Mode) {
    let (samples, edges) = {
        let mut pipeline = traces.pipeline();
        (pipeline.tick(now_ms), pipeline.new_edges())
    };
    if let Some(edges) = edges {
        state
            .engine()
            .learn_dependencies(edges.iter().map(|(c, s)| (c.as_str(), s.as_str())));
    }
    if !samples.is_empty() {
        state.ingest(Origin::Traces, samples, now_ms, mode);
    }
}
