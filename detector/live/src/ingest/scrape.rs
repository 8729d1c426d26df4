//! Scraping Prometheus/OpenMetrics targets as Prometheus does (`job` and `instance`
//! added, OpenMetrics preferred). A failed scrape is logged and counted; the loop carries on.

use std::sync::Arc;

use tracing::warn;

use super::body::read_body;
use crate::client::HttpClient;
use crate::config::{NameMatch, ScrapeConfig};
use crate::engine::{Mode, Origin};
use crate::state::{now_ms, LiveState};
use omen_detector::wire::{exposition, Sample};

/// What Prometheus sends when scraping: OpenMetrics preferred, text format accepted.
const SCRAPE_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
fn keep(name_match: Option<&NameMatch>, sample: &Sample) -> bool {
    name_match.is_none_or(|m| m.is_match(&sample.name))
}

/// Adds `job` and `instance` as Prometheus does (a target's own labels win).
pub fn target_labels(sample: &mut Sample, job: &str, instance: &str) {
    for (key, value) in [("job", job), ("instance", instance)] {
        if let Err(at) = sample.labels.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            sample.labels.insert(at, (key.to_owned(), value.to_owned()));
        }
    }
}

/// Scrapes one target every `interval` until the process ends.
pub async fn scrape_loop(config: ScrapeConfig, shared: Arc<LiveState>, client: HttpClient) {
    let instance = reqwest::Url::parse(&config.url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(80)
            )
        })
        .unwrap_or_default();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        match scrape(&client, &config).await {
            Ok(parsed) => {
                if parsed.malformed > 0 {
                    shared.count_error(Origin::Scrape, "malformed_lines");
                    warn!(url = %config.url, lines = parsed.malformed, first = parsed.first_error.as_deref().unwrap_or(""), "scrape had malformed lines");
                }
                let samples = parsed
                    .samples
                    .into_iter()
                    .filter(|s| keep(config.name_match.as_ref(), s))
                    .map(|mut s| {
                        target_labels(&mut s, &config.job, &instance);
                        s
                    });
                let selectors = (&config.include[..], &config.exclude[..]);
                let samples = shared.select(Origin::Scrape, selectors, samples);
                shared.ingest(Origin::Scrape, samples, now, Mode::Live);
            }
            Err((reason, error)) => {
                shared.count_error(Origin::Scrape, reason);
                warn!(url = %config.url, %error, "scrape failed");
            }
        }
    }
}

async fn scrape(
    client: &HttpClient,
    config: &ScrapeConfig,
) -> Result<exposition::Exposition, (&'static str, String)> {
    let response = client
        .request(reqwest::Method::GET, &config.url)
        .map_err(|e| ("credentials", e))?
        .header(reqwest::header::ACCEPT, SCRAPE_ACCEPT)
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| ("unreachable", e.to_string()))?;
    if !response.status().is_success() {
        return Err(("status", response.status().to_string()));
    }
    let body = read_body(response).await?;
    let text = std::str::from_utf8(&body).map_err(|e| ("malformed", e.to_string()))?;
    Ok(exposition::parse(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omen_detector::wire::ValueKind;

    #[test]
    fn target_labels_do_not_override_the_target_s_own() {
        let mut sample = Sample {
            name: "x".to_owned(),
            labels: vec![
                ("a".to_owned(), "1".to_owned()),
                ("job".to_owned(), "own".to_owned()),
            ],
            value: 1.0,
            timestamp_ms: None,
            kind: ValueKind::Gauge,
        };
        target_labels(&mut sample, "scrape", "127.0.0.1:9750");
        let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "instance", "job"]);
        assert_eq!(sample.labels[2].1, "own");
    }
}
