//! What logs say about services: how often each log template appears per service, over
//! time. A service whose templates change rate when an incident begins — an error that
//! was rare and is now every other line, a line that stops because the code that wrote it
//! is no longer reached — is evidence for it, in the same unit as the span signals: the
//! e-folds the rate moved, less `z` standard errors of its estimate (Poisson counts).
//!
//! Templates are ids the caller gives (the agent's template miner); counts are kept in
//! one-second buckets covering the [`KEPT_SECONDS`] before each key's newest, at most
//! `max_keys` keys (further keys are counted in `dropped`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

const NANO: u64 = 1_000_000_000;
/// Seconds of counts kept per key.
pub const KEPT_SECONDS: u64 = 900;
/// A before-window shorter than this is too short to judge a rate: the reference stands
/// in for it.
const MIN_BEFORE_SECONDS: f64 = 30.0;

/// A service and one of its templates.
type TemplateKey = (Arc<str>, u64);

/// Template counts per service over time; see the module doc.
#[derive(Debug, Default)]
pub struct LogRates {
    /// (service, template) → (second, count), oldest first.
    counts: HashMap<TemplateKey, VecDeque<(u64, u64)>>,
    first_second: Option<u64>,
    last_second: u64,
    max_keys: usize,
    pub dropped: u64,
}

impl LogRates {
    pub fn new(max_keys: usize) -> Self {
        Self {
            max_keys,
            ..Self::default()
        }
    }

    pub fn observe(&mut self, service: &Arc<str>, template: u64, at_nano: u64) {
        self.observe_count(service, template, at_nano, 1);
    }

    /// Records `count` lines at once (a counter's increase, from the agent's pattern
    /// metrics).
    pub fn observe_count(&mut self, service: &Arc<str>, template: u64, at_nano: u64, count: u64) {
        let second = at_nano / NANO;
        let key = (service.clone(), template);
        if !self.counts.contains_key(&key) && self.counts.len() >= self.max_keys {
            self.dropped += 1;
            return;
        }
        let buckets = self.counts.entry(key).or_default();
        match buckets.back_mut() {
            Some((s, n)) if *s == second => *n = n.saturating_add(count),
            _ => {
                // Out-of-order lines land in a bucket of their own; bucket order matters only
                // for dropping the oldest, and the count stays bounded by the seconds kept.
                buckets.push_back((second, count));
                let newest = buckets.iter().map(|(s, _)| *s).max().unwrap_or(second);
                while buckets.len() > 1
                    && buckets
                        .front()
                        .is_some_and(|(s, _)| newest.saturating_sub(*s) > KEPT_SECONDS)
                {
                    buckets.pop_front();
                }
                while buckets.len() as u64 > 2 * KEPT_SECONDS {
                    buckets.pop_front();
                }
            }
        }
        self.first_second = Some(self.first_second.map_or(second, |f| f.min(second)));
        self.last_second = self.last_second.max(second);
    }

    fn count(buckets: &VecDeque<(u64, u64)>, from: u64, to: u64) -> u64 {
        buckets
            .iter()
            .filter(|(s, _)| (from..to).contains(s))
            .fold(0u64, |total, (_, n)| total.saturating_add(*n))
    }

    /// Per service, the largest rate change of one of its templates between before `at`
    /// and `[at, until)`, less `z` standard errors. Where less than 30 s of logs precede
    /// `at`, `reference` (a fault-free period) stands in for the time before.
    pub fn shifts(
        &self,
        reference: &LogRates,
        at_nano: u64,
        until_nano: u64,
        z: f64,
    ) -> HashMap<Arc<str>, f64> {
        let mut out: HashMap<Arc<str>, f64> = HashMap::new();
        let Some(first) = self.first_second else {
            return out;
        };
        let at = at_nano / NANO;
        let until = (until_nano / NANO).min(self.last_second + 1);
        // Only seconds still kept count as time before: counts older than
        // `KEPT_SECONDS` before the newest are gone.
        let kept_from = at
            .saturating_sub(KEPT_SECONDS)
            .max(first)
            .max(self.last_second.saturating_sub(KEPT_SECONDS));
        let before_seconds = at.saturating_sub(kept_from) as f64;
        let during_seconds = until.saturating_sub(at) as f64;
        if during_seconds < 1.0 {
            return out;
        }
        let use_reference = before_seconds < MIN_BEFORE_SECONDS;
        let reference_seconds = reference
            .first_second
            .map_or(0.0, |f| (reference.last_second + 1 - f) as f64);
        if use_reference && reference_seconds < MIN_BEFORE_SECONDS {
            return out;
        }
        let mut keys: Vec<&TemplateKey> = self.counts.keys().collect();
        if use_reference {
            keys.extend(
                reference
                    .counts
                    .keys()
                    .filter(|k| !self.counts.contains_key(*k)),
            );
        }
        for key in keys {
            let live = self.counts.get(key);
            let during = live.map_or(0, |b| Self::count(b, at, until)) as f64;
            let (before, seconds) = if use_reference {
                let n = reference
                    .counts
                    .get(key)
                    .map_or(0, |b| b.iter().map(|(_, n)| n).sum());
                (n as f64, reference_seconds)
            } else {
                (
                    live.map_or(0, |b| Self::count(b, kept_from, at)) as f64,
                    before_seconds,
                )
            };
            let ratio = ((during + 0.5) / during_seconds) / ((before + 0.5) / seconds);
            let se = (1.0 / (during + 0.5) + 1.0 / (before + 0.5)).sqrt();
            let shift = (ratio.ln().abs() - z * se).max(0.0);
            let entry = out.entry(key.0.clone()).or_default();
            *entry = entry.max(shift);
        }
        out
    }

    pub fn keys(&self) -> usize {
        self.counts.len()
    }

    /// Whether any line of `service` was counted.
    pub fn has_service(&self, service: &str) -> bool {
        self.counts.keys().any(|(s, _)| &**s == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_that_floods_or_stops_moves_its_service_and_steady_ones_do_not() {
        let mut rates = LogRates::new(100);
        let (api, db, cache): (Arc<str>, Arc<str>, Arc<str>) =
            ("api".into(), "db".into(), "cache".into());
        for second in 0..120u64 {
            let at = second * NANO;
            rates.observe(&api, 1, at);
            rates.observe(&cache, 7, at);
            if second % 10 == 0 {
                rates.observe(&db, 2, at);
            }
            if second >= 60 {
                // api: an error every second from the incident on; cache: steady.
                rates.observe(&api, 3, at + 1);
            }
            if second < 60 {
                rates.observe(&db, 4, at + 2);
            }
        }
        let shifts = rates.shifts(&LogRates::default(), 60 * NANO, 120 * NANO, 1.5);
        assert!(shifts[&api] > 2.0, "{shifts:?}");
        assert!(shifts[&db] > 2.0, "a line that stops: {shifts:?}");
        assert_eq!(shifts[&cache], 0.0, "{shifts:?}");
    }

    #[test]
    fn with_too_little_before_the_reference_stands_in() {
        let mut reference = LogRates::new(100);
        let mut live = LogRates::new(100);
        let svc: Arc<str> = "svc".into();
        for second in 0..60u64 {
            reference.observe(&svc, 1, second * NANO);
        }
        for second in 1000..1060u64 {
            live.observe(&svc, 1, second * NANO);
            live.observe(&svc, 9, second * NANO);
        }
        let shifts = live.shifts(&reference, 1000 * NANO, 1060 * NANO, 1.5);
        assert!(
            shifts[&svc] > 2.0,
            "template 9 is new against the reference: {shifts:?}"
        );
        assert!(live
            .shifts(&LogRates::default(), 1000 * NANO, 1060 * NANO, 1.5)
            .is_empty());
    }
}
