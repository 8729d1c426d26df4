//! Alerts as Alertmanager knows them: one `OmenIncident` per incident (critical, with the
//! incident id and its probable root cause as labels) and one `OmenEarlyWarning` per
//! series whose forecast is heading for trouble (warning). The same [`Alert`] is posted
//! to Alertmanager's API v2, wrapped in Alertmanager's webhook JSON for webhook sinks, and
//! printed by the stdout sink.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

use crate::engine::correlate::{Change, Incident, IncidentEvent};
use omen_detector::model::forecast::WarningKind;
use omen_detector::series::format_rfc3339;

/// Members listed in an incident's annotations; the rest are counted.
const LISTED_MEMBERS: usize = 20;

/// An alert in Alertmanager's API v2 form (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Set when resolved; while firing Alertmanager keeps the alert for its
    /// `resolve_timeout` after each (re-)send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl Alert {
    pub fn is_resolved(&self) -> bool {
        self.ends_at.is_some()
    }

    /// Links the alert's section of the runbooks at `runbooks` (`runbook_url`, by its
    /// alert name, as the rules in `alerts/` link theirs).
    pub fn link_runbook(&mut self, runbooks: &str) {
        let name = self.labels.get("alertname").map_or("", String::as_str);
        let anchor = omen_common::runbooks::anchor(name);
        let url = format!("{}#{anchor}", runbooks.trim_end_matches('#'));
        self.annotations.insert("runbook_url".to_owned(), url);
    }

    /// Identifies the alert as Alertmanager does: by its label set.
    pub fn fingerprint(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.labels.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Alertmanager's webhook JSON (version 4) for this one alert, as a receiver behind
    /// Alertmanager would get it.
    pub fn webhook_payload(&self, receiver: &str, external_url: &str) -> serde_json::Value {
        let status = if self.is_resolved() {
            "resolved"
        } else {
            "firing"
        };
        let group_labels: BTreeMap<&str, &str> = self
            .labels
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "alertname" | "incident"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let group_key = format!(
            "{{}}:{{{}}}",
            group_labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        serde_json::json!({
            "version": "4",
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "status": status,
            "receiver": receiver,
            "groupLabels": group_labels,
            "commonLabels": self.labels,
            "commonAnnotations": self.annotations,
            "externalURL": external_url,
            "alerts": [{
                "status": status,
                "labels": self.labels,
                "annotations": self.annotations,
                "startsAt": self.starts_at,
                "endsAt": self.ends_at.as_deref().unwrap_or("0001-01-01T00:00:00Z"),
                "generatorURL": self.generator_url,
                "fingerprint": self.fingerprint(),
            }],
        })
    }
}

/// Renders `name{label="value",...}` for a series' labels (the metric name in `metric`).
pub fn selector(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "metric")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if inner.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", inner.join(","))
    }
}

fn incident_alert(incident: &Incident, root_cause: &str, dashboard_url: &str) -> Alert {
    let root = incident.root_cause();
    let mut labels = BTreeMap::from([
        ("alertname".to_owned(), "OmenIncident".to_owned()),
        ("severity".to_owned(), "critical".to_owned()),
        ("incident".to_owned(), incident.id.clone()),
        ("root_cause".to_owned(), root_cause.to_owned()),
    ]);
    for key in ["service", "job", "instance"] {
        if let Some(value) = root.labels.get(key) {
            labels.insert(key.to_owned(), value.clone());
        }
    }
    let mut members: Vec<String> = incident
        .members
        .iter()
        .take(LISTED_MEMBERS)
        .map(|m| {
            let driver = m
                .driver
                .map_or(String::new(), |d| format!(", by {}", d.as_str()));
            format!(
                "{} (since {}, score {:.2}{driver})",
                m.series,
                format_rfc3339(m.onset_ms),
                m.peak
            )
        })
        .collect();
    if incident.members.len() > LISTED_MEMBERS {
        members.push(format!(
            "and {} more",
            incident.members.len() - LISTED_MEMBERS
        ));
    }
    let dashboard = format!(
        "{dashboard_url}?from={}&to=now",
        incident.started_ms - 3_600_000
    );
    let mut annotations = BTreeMap::from([
        (
            "summary".to_owned(),
            format!(
                "{} anomalous series since {}; probable root cause {}",
                incident.members.len(),
                format_rfc3339(incident.started_ms),
                root.series
            ),
        ),
        ("members".to_owned(), members.join("\n")),
        ("started".to_owned(), format_rfc3339(incident.started_ms)),
        (
            "raised".to_owned(),
            format_rfc3339(incident.raised_ms.unwrap_or(incident.started_ms)),
        ),
        ("dashboard".to_owned(), dashboard.clone()),
    ]);
    if let Some(traces) = &incident.traces {
        if let Some((service, _)) = traces.ranking.first() {
            annotations.insert("trace_root_cause".to_owned(), service.clone());
        }
        if !traces.exemplar_trace_ids.is_empty() {
            annotations.insert("trace_ids".to_owned(), traces.exemplar_trace_ids.join(","));
        }
    }
    Alert {
        labels,
        annotations,
        starts_at: format_rfc3339(incident.started_ms),
        ends_at: incident.resolved_ms.map(format_rfc3339),
        generator_url: dashboard,
    }
}

/// The alerts an incident change sends: its alert, and, when a joining member took over
/// as root cause, the end of the alert under the old root cause (labels are an alert's
/// identity in Alertmanager).
pub fn incident_alerts(event: &IncidentEvent, dashboard_url: &str, now_ms: i64) -> Vec<Alert> {
    let incident = &event.incident;
    let mut alerts = Vec::with_capacity(2);
    if let Some(previous) = &event.previous_root_cause {
        if event.change == Change::Joined && *previous != incident.root_cause().series {
            let mut ended = incident_alert(incident, previous, dashboard_url);
            ended.ends_at = Some(format_rfc3339(now_ms));
            alerts.push(ended);
        }
    }
    alerts.push(incident_alert(
        incident,
        &incident.root_cause().series,
        dashboard_url,
    ));
    alerts
}

/// An early warning about one series.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyWarning {
    pub series: String,
    pub labels: BTreeMap<String, String>,
    pub kind: WarningKind,
    pub since_ms: i64,
    /// When the forecast says the series will be in trouble.
    pub at_ms: i64,
    pub resolved_ms: Option<i64>,
}

pub fn warning_alert(warning: &EarlyWarning, dashboard_url: &str) -> Alert {
    let mut labels = warning.labels.clone();
    labels.insert("alertname".to_owned(), "OmenEarlyWarning".to_owned());
    labels.insert("severity".to_owned(), "warning".to_owned());
    let what = match warning.kind {
        WarningKind::LeavesBand => "will leave its expected band",
        WarningKind::CrossesLimit => "will cross its configured limit",
    };
    let annotations = BTreeMap::from([
        (
            "summary".to_owned(),
            format!(
                "{} {what} at about {}",
                warning.series,
                format_rfc3339(warning.at_ms)
            ),
        ),
        ("series".to_owned(), warning.series.clone()),
        ("expected_at".to_owned(), format_rfc3339(warning.at_ms)),
        ("dashboard".to_owned(), dashboard_url.to_owned()),
    ]);
    Alert {
        labels,
        annotations,
        starts_at: format_rfc3339(warning.since_ms),
        ends_at: warning.resolved_ms.map(format_rfc3339),
        generator_url: dashboard_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::correlate::Member;
    use omen_detector::model::Driver;

    fn member(series: &str, service: &str, onset_ms: i64) -> Member {
        Member {
            series: series.to_owned(),
            labels: BTreeMap::from([("service".to_owned(), service.to_owned())]),
            onset_ms,
            last_active_ms: onset_ms,
            peak: 1.0,
            off_band_points: 1,
            driver: Some(Driver::BeyondRange),
        }
    }

    #[test]
    fn a_new_root_cause_ends_the_alert_under_the_old_one() {
        let incident = Incident {
            id: "inc-1-1".to_owned(),
            started_ms: 1_000,
            last_active_ms: 2_000,
            members: vec![
                member("redis_latency", "redis", 1_500),
                member("checkout_latency", "checkout", 1_000),
            ],
            resolved_ms: None,
            confirmed: true,
            raised_ms: Some(2_000),
            traces: None,
        };
        let event = IncidentEvent {
            change: Change::Joined,
            incident,
            previous_root_cause: Some("checkout_latency".to_owned()),
            joined: Some("checkout_latency".to_owned()),
        };
        let alerts = incident_alerts(&event, "http://grafana/d/omen", 2_000);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].labels["root_cause"], "checkout_latency");
        assert_eq!(
            alerts[0].ends_at.as_deref(),
            Some("1970-01-01T00:00:02.000Z")
        );
        let firing = &alerts[1];
        assert_eq!(firing.labels["root_cause"], "redis_latency");
        assert_eq!(firing.labels["service"], "redis");
        assert_eq!(firing.labels["incident"], "inc-1-1");
        assert!(firing.annotations["members"].lines().count() == 2);
        assert!(
            firing.annotations["members"]
                .lines()
                .all(|line| line.ends_with(", by beyond_range)")),
            "{}",
            firing.annotations["members"]
        );
        assert!(!firing.is_resolved());
        let json = serde_json::to_value(firing).unwrap();
        assert_eq!(json["startsAt"], "1970-01-01T00:00:01.000Z");
        assert!(json.get("endsAt").is_none());
        assert!(json["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://grafana/d/omen"));
        let hook = firing.webhook_payload("omen", "http://omen");
        assert_eq!(hook["status"], "firing");
        assert_eq!(hook["alerts"][0]["labels"]["root_cause"], "redis_latency");
        assert_eq!(hook["groupLabels"]["incident"], "inc-1-1");
    }

    #[test]
    fn an_alert_links_the_runbook_section_of_its_name() {
        let mut alert = warning_alert(
            &EarlyWarning {
                series: "queue_depth".to_owned(),
                labels: BTreeMap::new(),
                kind: WarningKind::LeavesBand,
                since_ms: 0,
                at_ms: 60_000,
                resolved_ms: None,
            },
            "http://grafana/d/omen",
        );
        alert.link_runbook("https://omen.example.net/runbooks");
        assert_eq!(
            alert.annotations["runbook_url"],
            "https://omen.example.net/runbooks#omenearlywarning"
        );
    }

    #[test]
    fn selectors_quote_values() {
        let labels = BTreeMap::from([
            ("a".to_owned(), "x\"y".to_owned()),
            ("metric".to_owned(), "up".to_owned()),
        ]);
        assert_eq!(selector("up", &labels), "up{a=\"x\\\"y\"}");
        assert_eq!(selector("up", &BTreeMap::new()), "up");
    }
}
