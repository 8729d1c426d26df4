//! Correlation: anomalies close in time that share a label value (service, instance, job)
//! or whose services are linked in the dependency graph form one incident. An incident
//! opens with its first anomaly, grows as related anomalies join, and resolves once every
//! one of its series has been back inside its expected band, with no new alarm, for the
//! quiet period. Root-cause candidates are ranked: members whose values left their band
//! first, then by earliest onset, then most upstream (the service the most other members
//! call, directly or not), then strongest score.
//!
//! An alarm starts an incident, but a page needs evidence the value itself is off: the
//! incident is raised (announced as opened) once its members have been outside their
//! expected bands on `confirm_points` points, or two members have been outside theirs.
//! A likelihood alarm on values within the band (a run of slightly high points) stays
//! visible in `omen_anomaly_score` without paging anyone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use omen_detector::model::Driver;
use serde::{Deserialize, Serialize};

use crate::config::CorrelationConfig;

/// One anomalous series within an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The series' selector, `name{label="value",...}`.
    pub series: String,
    pub labels: BTreeMap<String, String>,
    pub onset_ms: i64,
    pub last_active_ms: i64,
    /// The highest anomaly score seen.
    pub peak: f64,
    /// Points outside the expected band since the onset.
    pub off_band_points: u32,
    /// What drove the alarm it joined with: the channel or rule (`beyond_range`,
    /// `baseline`, `shape`, …), so that a reader sees why it fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
}

/// A group of related anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub started_ms: i64,
    pub last_active_ms: i64,
    /// Ranked: the probable root cause first.
    pub members: Vec<Member>,
    pub resolved_ms: Option<i64>,
    /// Whether enough evidence came in to raise it (see [`CorrelationConfig::confirm_points`]);
    /// an unconfirmed incident that goes quiet is dropped without a word.
    pub confirmed: bool,
    /// When it was raised (confirmed): what a page's latency is measured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_ms: Option<i64>,
    /// What spans say about it, when traces are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TraceContext>,
}

/// The root cause spans point at, and traces that show the incident (exemplars to open in
/// Tempo or Jaeger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceContext {
    /// Services ranked by span evidence since the incident began, best first, with scores.
    pub ranking: Vec<(String, f64)>,
    /// Trace ids through the top-ranked service, slowest or failed first.
    pub exemplar_trace_ids: Vec<String>,
}

impl Incident {
    /// The probable root cause: the first ranked member.
    pub fn root_cause(&self) -> &Member {
        &self.members[0]
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Opened,
    /// A series joined (the ranking, and maybe the root cause, changed).
    Joined,
    Resolved,
}

/// An incident after a change, with the root cause it had before and the series that
/// joined (for `Joined`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    pub change: Change,
    pub incident: Incident,
    pub previous_root_cause: Option<String>,
    pub joined: Option<String>,
}

/// What a detector tells the correlator about one point of a series: an alarm, or that
/// a series not back to normal is still active. Detectors that share the work on Kafka
/// send these to one correlator through the anomalies topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    Anomaly {
        series: String,
        labels: BTreeMap<String, String>,
        at_ms: i64,
        score: f64,
        off_band: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver: Option<Driver>,
    },
    Active {
        series: String,
        /// The series' labels, sent with `suppressed_alarm` only: the one case where the
        /// point may start an incident or join one as a new member.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
        at_ms: i64,
        off_band: bool,
        /// The likelihood, when it reached the alarm level while the series' alarms are
        /// suppressed after an earlier one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suppressed_alarm: Option<f64>,
        /// What drove the suppressed alarm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver: Option<Driver>,
    },
}

/// An alarm's score and what drove it (a bare score has no driver).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub score: f64,
    pub driver: Option<Driver>,
}

impl From<f64> for Reading {
    fn from(score: f64) -> Self {
        Self {
            score,
            driver: None,
        }
    }
}

impl Evidence {
    pub fn series(&self) -> &str {
        match self {
            Self::Anomaly { series, .. } | Self::Active { series, .. } => series,
        }
    }
}

/// The incidents, open and recently resolved. Serialisable with the model state, so a
/// restart keeps its incidents (and their alert identities).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Correlator {
    open: Vec<Incident>,
    recent: VecDeque<Incident>,
    next_seq: u64,
}

/// Resolved incidents kept for `/api/v1/incidents`.
const RECENT: usize = 50;

impl Correlator {
    pub fn open(&self) -> &[Incident] {
        &self.open
    }

    pub fn recent(&self) -> impl Iterator<Item = &Incident> {
        self.recent.iter()
    }

    /// Attaches what spans say to the open incident `id`.
    pub fn annotate(&mut self, id: &str, context: TraceContext) {
        if let Some(incident) = self.open.iter_mut().find(|i| i.id == id) {
            incident.traces = Some(context);
        }
    }

    /// Whether `series` belongs to an open incident.
    pub fn is_member(&self, series: &str) -> bool {
        self.open
            .iter()
            .any(|i| i.members.iter().any(|m| m.series == series))
    }

    /// Takes one piece of evidence in.
    pub fn apply(
        &mut self,
        config: &CorrelationConfig,
        evidence: &Evidence,
    ) -> Option<IncidentEvent> {
        match evidence {
            Evidence::Anomaly {
                series,
                labels,
                at_ms,
                score,
                off_band,
                driver,
            } => {
                let reading = Reading {
                    score: *score,
                    driver: *driver,
                };
                self.anomaly(config, series, labels, *at_ms, reading, *off_band)
            }
            Evidence::Active {
                series,
                labels,
                at_ms,
                off_band,
                suppressed_alarm,
                driver,
            } => match suppressed_alarm {
                // A series' alarms are suppressed for a while after one, longer than an
                // unconfirmed incident may stay open: outside any incident, a suppressed
                // alarm on a value off its band is an anomaly like any other.
                Some(score) if *off_band && !self.is_member(series) => {
                    let reading = Reading {
                        score: *score,
                        driver: *driver,
                    };
                    self.anomaly(config, series, labels, *at_ms, reading, true)
                }
                _ => self.still_active(config, series, *at_ms, *off_band),
            },
        }
    }

    /// An anomaly (an alarm) of `series` at `at_ms` with `reading`'s score.
    pub fn anomaly(
        &mut self,
        config: &CorrelationConfig,
        series: &str,
        labels: &BTreeMap<String, String>,
        at_ms: i64,
        reading: impl Into<Reading>,
        off_band: bool,
    ) -> Option<IncidentEvent> {
        let Reading { score, driver } = reading.into();
        if self.is_member(series) {
            return self.activity(config, series, at_ms, off_band, score);
        }
        let member = Member {
            series: series.to_owned(),
            labels: labels.clone(),
            onset_ms: at_ms,
            last_active_ms: at_ms,
            peak: score,
            off_band_points: u32::from(off_band),
            driver,
        };
        let window = config.window.as_millis() as i64;
        let joined = self
            .open
            .iter_mut()
            .filter(|i| at_ms - i.last_active_ms <= window)
            .filter(|i| i.members.iter().any(|m| related(config, m, &member)))
            .max_by_key(|i| i.last_active_ms);
        if let Some(incident) = joined {
            let previous = incident.root_cause().series.clone();
            let newcomer = member.series.clone();
            incident.members.push(member);
            incident.last_active_ms = incident.last_active_ms.max(at_ms);
            rank(config, &mut incident.members);
            if !incident.confirmed {
                return confirm(config, incident);
            }
            return Some(IncidentEvent {
                change: Change::Joined,
                incident: incident.clone(),
                previous_root_cause: Some(previous),
                joined: Some(newcomer),
            });
        }
        self.next_seq += 1;
        let mut incident = Incident {
            id: format!("inc-{}-{}", at_ms.div_euclid(1000), self.next_seq),
            started_ms: at_ms,
            last_active_ms: at_ms,
            members: vec![member],
            resolved_ms: None,
            confirmed: false,
            raised_ms: None,
            traces: None,
        };
        let event = confirm(config, &mut incident);
        self.open.push(incident);
        event
    }

    /// `series` is still anomalous at `at_ms` (no new alarm, but not back to normal).
    /// `off_band`: the point is outside the expected band, which keeps its incident open
    /// and counts towards raising it; a point merely still unlikely (the likelihood trails
    /// an alarm) does neither.
    pub fn still_active(
        &mut self,
        config: &CorrelationConfig,
        series: &str,
        at_ms: i64,
        off_band: bool,
    ) -> Option<IncidentEvent> {
        self.activity(config, series, at_ms, off_band, 0.0)
    }

    /// Records activity of a member series; raises its incident if that is the evidence
    /// it lacked.
    fn activity(
        &mut self,
        config: &CorrelationConfig,
        series: &str,
        at_ms: i64,
        off_band: bool,
        score: f64,
    ) -> Option<IncidentEvent> {
        let incident = self
            .open
            .iter_mut()
            .find(|i| i.members.iter().any(|m| m.series == series))?;
        let member = incident.members.iter_mut().find(|m| m.series == series)?;
        member.peak = member.peak.max(score);
        member.off_band_points += u32::from(off_band);
        // Only a point off its band (or a new alarm) keeps an incident open: once every
        // member is back inside its band for `quiet`, it resolves, however unlikely the
        // recent past still makes the latest points look.
        if off_band || score > 0.0 {
            member.last_active_ms = member.last_active_ms.max(at_ms);
            incident.last_active_ms = incident.last_active_ms.max(at_ms);
        }
        confirm(config, incident)
    }

    /// Resolves the incidents quiet for the configured period at `now_ms`.
    pub fn resolve_quiet(&mut self, config: &CorrelationConfig, now_ms: i64) -> Vec<IncidentEvent> {
        let quiet = config.quiet.as_millis() as i64;
        let (done, open): (Vec<Incident>, Vec<Incident>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|i| now_ms - i.last_active_ms >= quiet);
        self.open = open;
        done.into_iter()
            .filter(|incident| incident.confirmed)
            .map(|mut incident| {
                incident.resolved_ms = Some(now_ms);
                self.recent.push_back(incident.clone());
                if self.recent.len() > RECENT {
                    self.recent.pop_front();
                }
                IncidentEvent {
                    change: Change::Resolved,
                    incident,
                    previous_root_cause: None,
                    joined: None,
                }
            })
            .collect()
    }
}

/// Raises an incident once it has the evidence: enough points off the band, or two
/// series off theirs.
fn confirm(config: &CorrelationConfig, incident: &mut Incident) -> Option<IncidentEvent> {
    let off_band: u32 = incident.members.iter().map(|m| m.off_band_points).sum();
    let members_off = incident
        .members
        .iter()
        .filter(|m| m.off_band_points > 0)
        .count();
    if incident.confirmed || (off_band < config.confirm_points && members_off < 2) {
        return None;
    }
    incident.confirmed = true;
    incident.raised_ms = Some(incident.last_active_ms);
    Some(IncidentEvent {
        change: Change::Opened,
        incident: incident.clone(),
        previous_root_cause: None,
        joined: None,
    })
}

fn service<'a>(config: &CorrelationConfig, member: &'a Member) -> Option<&'a str> {
    member.labels.get(&config.service_label).map(String::as_str)
}

/// Services reachable from `from` along calls (callees, transitively), `from` included.
fn callees<'a>(config: &'a CorrelationConfig, from: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([from]);
    let mut stack = vec![from];
    while let Some(service) = stack.pop() {
        for callee in config.dependencies.get(service).into_iter().flatten() {
            if seen.insert(callee.as_str()) {
                stack.push(callee);
            }
        }
    }
    seen
}

/// Two anomalies belong together when they share a value of a correlation label or one's
/// service calls the other's, directly or not.
fn related(config: &CorrelationConfig, a: &Member, b: &Member) -> bool {
    let shares_label = config.labels.iter().any(
        |label| matches!((a.labels.get(label), b.labels.get(label)), (Some(x), Some(y)) if x == y),
    );
    if shares_label {
        return true;
    }
    match (service(config, a), service(config, b)) {
        (Some(x), Some(y)) => callees(config, x).contains(y) || callees(config, y).contains(x),
        _ => false,
    }
}

/// Orders members by likelihood of being the root cause.
fn rank(config: &CorrelationConfig, members: &mut [Member]) {
    let Some(first_onset) = members.iter().map(|m| m.onset_ms).min() else {
        return;
    };
    let tolerance = (config.onset_tolerance.as_millis() as i64).max(1);
    let services: Vec<Option<String>> = members
        .iter()
        .map(|m| service(config, m).map(str::to_owned))
        .collect();
    // How many other members' services call this member's service, directly or not.
    let callers = |member: &Member| -> usize {
        let Some(own) = service(config, member) else {
            return 0;
        };
        services
            .iter()
            .flatten()
            .filter(|s| s.as_str() != own && callees(config, s).contains(own))
            .count()
    };
    // A member whose values never left their band (a likelihood alarm on a run of
    // slightly high points) is weaker evidence than any that did: it comes after them.
    type Key = (bool, i64, std::cmp::Reverse<usize>);
    let mut keyed: Vec<(Key, Member)> = members
        .iter()
        .map(|m| {
            let tier = (m.onset_ms - first_onset) / tolerance;
            let in_band = m.off_band_points == 0;
            ((in_band, tier, std::cmp::Reverse(callers(m))), m.clone())
        })
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        ka.cmp(kb)
            .then(b.peak.total_cmp(&a.peak))
            .then(a.onset_ms.cmp(&b.onset_ms))
            .then(a.series.cmp(&b.series))
    });
    for (slot, (_, member)) in members.iter_mut().zip(keyed) {
        *slot = member;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config() -> CorrelationConfig {
        CorrelationConfig {
            window: Duration::from_secs(60),
            quiet: Duration::from_secs(120),
            labels: vec!["instance".to_owned()],
            dependencies: BTreeMap::from([
                ("checkout".to_owned(), vec!["inventory".to_owned()]),
                ("inventory".to_owned(), vec!["redis".to_owned()]),
            ]),
            onset_tolerance: Duration::from_secs(10),
            confirm_points: 1,
            ..CorrelationConfig::default()
        }
    }

    #[test]
    fn a_cascade_is_one_incident_with_the_deepest_callee_as_root_cause() {
        let config = config();
        let mut c = Correlator::default();
        let opened = c
            .anomaly(
                &config,
                "latency{service=\"checkout\"}",
                &labels(&[("service", "checkout")]),
                1_000,
                0.9,
                true,
            )
            .unwrap();
        assert_eq!(opened.change, Change::Opened);
        // Within the onset tolerance, the more upstream service ranks first even if later.
        let joined = c
            .anomaly(
                &config,
                "errors{service=\"redis\"}",
                &labels(&[("service", "redis")]),
                6_000,
                0.6,
                true,
            )
            .unwrap();
        assert_eq!(joined.change, Change::Joined);
        assert_eq!(
            joined.previous_root_cause.as_deref(),
            Some("latency{service=\"checkout\"}")
        );
        assert_eq!(
            joined.incident.root_cause().series,
            "errors{service=\"redis\"}"
        );
        let joined = c
            .anomaly(
                &config,
                "queue{service=\"inventory\"}",
                &labels(&[("service", "inventory")]),
                8_000,
                1.0,
                true,
            )
            .unwrap();
        let order: Vec<_> = joined
            .incident
            .members
            .iter()
            .map(|m| m.series.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "errors{service=\"redis\"}",
                "queue{service=\"inventory\"}",
                "latency{service=\"checkout\"}"
            ]
        );
        // A repeat alarm of a member changes nothing visible.
        assert!(c
            .anomaly(
                &config,
                "queue{service=\"inventory\"}",
                &labels(&[("service", "inventory")]),
                9_000,
                1.0,
                true,
            )
            .is_none());
        assert_eq!(c.open().len(), 1);
    }

    #[test]
    fn unrelated_or_distant_anomalies_open_their_own_incidents() {
        let config = config();
        let mut c = Correlator::default();
        c.anomaly(
            &config,
            "a",
            &labels(&[("service", "checkout")]),
            0,
            1.0,
            true,
        );
        // Unrelated service.
        let other = c
            .anomaly(
                &config,
                "b",
                &labels(&[("service", "billing")]),
                1_000,
                1.0,
                true,
            )
            .unwrap();
        assert_eq!(other.change, Change::Opened);
        // Related, but after the window.
        let late = c
            .anomaly(
                &config,
                "c",
                &labels(&[("service", "redis")]),
                100_000,
                1.0,
                true,
            )
            .unwrap();
        assert_eq!(late.change, Change::Opened);
        // Sharing an instance label.
        let same_host = c
            .anomaly(
                &config,
                "d",
                &labels(&[("instance", "h1"), ("service", "x")]),
                100_500,
                1.0,
                true,
            )
            .unwrap();
        assert_eq!(same_host.change, Change::Opened);
        let joined = c
            .anomaly(
                &config,
                "e",
                &labels(&[("instance", "h1")]),
                101_000,
                1.0,
                true,
            )
            .unwrap();
        assert_eq!(joined.change, Change::Joined);
        assert_eq!(c.open().len(), 4);
    }

    #[test]
    fn a_lone_blip_is_not_raised_but_a_lasting_or_shared_anomaly_is() {
        let config = CorrelationConfig {
            confirm_points: 3,
            ..config()
        };
        let mut c = Correlator::default();
        let redis = labels(&[("service", "redis")]);
        assert!(c.anomaly(&config, "blip", &redis, 0, 1.0, true).is_none());
        // Quiet again: dropped without a resolve.
        assert!(c.resolve_quiet(&config, 200_000).is_empty());
        assert!(c
            .anomaly(&config, "a", &redis, 300_000, 1.0, true)
            .is_none());
        assert!(c.still_active(&config, "a", 301_000, true).is_none());
        assert!(
            c.still_active(&config, "a", 301_500, false).is_none(),
            "unlikely, in band"
        );
        let opened = c.still_active(&config, "a", 302_000, true).unwrap();
        assert_eq!(
            (opened.change, opened.incident.started_ms),
            (Change::Opened, 300_000)
        );
        assert!(opened.incident.confirmed);
        // Alarms on values within their bands (a run of slightly high points) never page.
        let db = labels(&[("service", "db")]);
        assert!(c.anomaly(&config, "d1", &db, 600_000, 1.0, false).is_none());
        assert!(c.anomaly(&config, "d2", &db, 600_000, 1.0, false).is_none());
        for t in 1..10 {
            assert!(c.still_active(&config, "d1", 600_000 + t, false).is_none());
        }
        // Two related series confirm at once.
        assert!(c
            .anomaly(
                &config,
                "b",
                &labels(&[("service", "billing")]),
                900_000,
                1.0,
                true,
            )
            .is_none());
        let opened = c
            .anomaly(
                &config,
                "c",
                &labels(&[("service", "billing")]),
                901_000,
                1.0,
                true,
            )
            .unwrap();
        assert_eq!(
            (opened.change, opened.incident.members.len()),
            (Change::Opened, 2)
        );
    }

    #[test]
    fn each_joining_series_is_named_once_even_when_several_join_at_once() {
        let config = config();
        let mut c = Correlator::default();
        let host = labels(&[("instance", "h1")]);
        let opened = c.anomaly(&config, "a", &host, 0, 0.9, true).unwrap();
        assert_eq!(opened.change, Change::Opened);
        // Two series join at the same instant; ranking reorders the members each time.
        let mut named = Vec::new();
        for (series, peak) in [("b", 1.0), ("c", 0.5)] {
            let joined = c
                .anomaly(&config, series, &host, 1_000, peak, true)
                .unwrap();
            assert_eq!(joined.change, Change::Joined);
            named.push(joined.joined.unwrap());
        }
        assert_eq!(named, ["b", "c"]);
    }

    #[test]
    fn a_suppressed_alarm_off_the_band_counts_outside_an_incident_only() {
        let config = config();
        let mut c = Correlator::default();
        let checkout = labels(&[("service", "checkout")]);
        let active = |at_ms, off_band, suppressed_alarm| Evidence::Active {
            series: "checkout".to_owned(),
            labels: checkout.clone(),
            at_ms,
            off_band,
            suppressed_alarm,
            driver: None,
        };
        // A blip of checkout, dropped once quiet; its alarms stay suppressed after that.
        c.anomaly(&config, "checkout", &checkout, 0, 1.0, false);
        assert!(c.resolve_quiet(&config, 130_000).is_empty());
        assert!(c.open().is_empty());
        let redis = labels(&[("service", "redis")]);
        let opened = c
            .anomaly(&config, "redis", &redis, 140_000, 1.0, true)
            .unwrap();
        assert_eq!(opened.change, Change::Opened);
        // Unlikely but within its band, or off its band but likely: not evidence enough.
        assert!(c
            .apply(&config, &active(141_000, false, Some(0.999)))
            .is_none());
        assert!(c.apply(&config, &active(141_500, true, None)).is_none());
        assert!(!c.is_member("checkout"));
        let joined = c
            .apply(&config, &active(142_000, true, Some(0.999)))
            .unwrap();
        assert_eq!(joined.change, Change::Joined);
        let members: Vec<_> = joined.incident.members.iter().map(|m| &m.series).collect();
        assert_eq!(members, ["redis", "checkout"]);
        assert_eq!(joined.incident.members[1].peak, 0.999);
        // A member's suppressed alarms are its activity, as before.
        assert!(c
            .apply(&config, &active(143_000, true, Some(1.0)))
            .is_none());
        assert_eq!(c.open().len(), 1);
        assert_eq!(c.open()[0].members[1].off_band_points, 2);
        // Without a related incident, it opens one.
        let billing = Evidence::Active {
            series: "billing".to_owned(),
            labels: labels(&[("service", "billing")]),
            at_ms: 144_000,
            off_band: true,
            suppressed_alarm: Some(0.999),
            driver: None,
        };
        let own = c.apply(&config, &billing).unwrap();
        assert_eq!((own.change, c.open().len()), (Change::Opened, 2));
    }

    #[test]
    fn evidence_from_an_older_detector_still_reads() {
        let old = r#"{"kind":"active","series":"s","at_ms":5,"off_band":true}"#;
        let evidence: Evidence = serde_json::from_str(old).unwrap();
        assert_eq!(
            evidence,
            Evidence::Active {
                series: "s".to_owned(),
                labels: BTreeMap::new(),
                at_ms: 5,
                off_band: true,
                suppressed_alarm: None,
                driver: None,
            }
        );
        // And a point with no suppressed alarm is sent in that same form, without labels.
        assert_eq!(serde_json::to_string(&evidence).unwrap(), old);
    }

    #[test]
    fn an_incident_resolves_after_the_quiet_period_of_its_last_member() {
        let config = config();
        let mut c = Correlator::default();
        c.anomaly(&config, "a", &labels(&[("service", "redis")]), 0, 1.0, true);
        c.still_active(&config, "a", 50_000, true);
        assert!(c.resolve_quiet(&config, 169_999).is_empty());
        let resolved = c.resolve_quiet(&config, 170_000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].incident.resolved_ms, Some(170_000));
        assert!(c.open().is_empty() && !c.is_member("a"));
        assert_eq!(c.recent().count(), 1);
        // The same series later is a new incident with a new id.
        let again = c
            .anomaly(&config, "a", &labels(&[]), 500_000, 1.0, true)
            .unwrap();
        assert_ne!(again.incident.id, resolved[0].incident.id);
    }

    #[test]
    fn a_member_back_inside_its_band_keeps_nothing_open_however_unlikely_it_looks() {
        let config = config();
        let mut c = Correlator::default();
        let opened = c.anomaly(&config, "a", &labels(&[("service", "redis")]), 0, 1.0, true);
        assert_eq!(opened.unwrap().incident.raised_ms, Some(0));
        c.still_active(&config, "a", 10_000, true);
        c.still_active(&config, "a", 20_000, true);
        // Back inside its band, the likelihood still trailing the alarm: quiet from 20 s.
        for at in (30_000..300_000).step_by(10_000) {
            c.still_active(&config, "a", at, false);
        }
        assert_eq!(c.open()[0].last_active_ms, 20_000);
        assert_eq!(c.resolve_quiet(&config, 140_000).len(), 1);
    }
}
