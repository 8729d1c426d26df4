//! A small production fleet, simulated minute by minute: six services (web → api →
//! orders → payments, api → search, a worker draining queues) on fourteen hosts. Request
//! rates follow a day with two humps and quieter weekends; latencies, error ratios, in-
//! flight requests, heaps and CPU follow the load; disks fill and are cleaned nightly;
//! queues fluctuate; batch jobs run at night and on the hour. The live week carries a
//! deploy that shifts levels on purpose, a marketing campaign in the calendar, and seven
//! injected incidents, one of them in a service born minutes before it fails.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

use omen_detector::model::baseline::EventEffect;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// What a series measures, with the parameters of its normal behaviour.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Requests per second at the daily peak of a weekday.
    Rate { peak: f64 },
    /// A 99th-percentile latency in seconds at rest; load raises it a little.
    Latency { base: f64 },
    /// Failed requests over requests, for a service with `peak` requests per second.
    ErrorRatio { base: f64, peak: f64 },
    /// Requests in flight (rate times latency).
    Inflight { peak: f64, latency: f64 },
    /// Bytes of heap, a sawtooth between collections.
    Heap { base: f64 },
    /// A share of a CPU, `idle` plus `busy` at the daily peak.
    Cpu { idle: f64, busy: f64 },
    /// Bytes of memory in use.
    Memory { base: f64 },
    /// Bytes on disk: fills during the day, cleaned at 00:30.
    Disk { base: f64, per_day: f64 },
    /// Open connections (an integer).
    Connections { idle: f64, busy: f64 },
    /// Hit ratio of a cache.
    HitRatio { base: f64 },
    /// Messages waiting in a queue (an integer).
    QueueDepth { mean: f64 },
    /// Rows per second of a batch job: `rows` while it runs, else nothing.
    Batch {
        rows: f64,
        every_ms: i64,
        at_ms: i64,
        runs_ms: i64,
    },
}

/// One simulated series.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    shape: Shape,
    /// From when it exists (a service deployed during the live week).
    pub born_ms: i64,
}

impl SeriesSpec {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What goes wrong, or is planned, and how it changes the series it touches.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Values times a factor, ramping in over `ramp_ms`.
    Scale { factor: f64, ramp_ms: i64 },
    /// Values times (1 + `per_hour` × hours since the start): a leak.
    Grow { per_hour: f64 },
    /// Plus `per_minute` × minutes since the start: a queue nobody drains.
    Accumulate { per_minute: f64 },
    /// Replaced by this value.
    Set { value: f64 },
}

/// Which series a change touches: a metric name (or any) and one label's values.
#[derive(Debug, Clone, Copy)]
struct Target {
    name: Option<&'static str>,
    label: &'static str,
    values: &'static [&'static str],
}

impl Target {
    fn matches(&self, series: &SeriesSpec) -> bool {
        self.name.is_none_or(|n| n == series.name)
            && series
                .label(self.label)
                .is_some_and(|v| self.values.contains(&v))
    }
}

#[derive(Debug, Clone, Copy)]
struct Effect {
    target: Target,
    change: Change,
}

/// What kind of event a window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An injected incident: it should page once.
    Incident,
    /// Planned (a deploy, a campaign in the calendar): it should not page.
    Planned,
}

/// An incident or a planned event of the live week.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub name: &'static str,
    pub kind: Kind,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The service where it starts (the root cause an incident should name).
    pub service: &'static str,
    /// Grows slowly: an early warning should come before the page.
    pub slow: bool,
    /// For a planned event, its calendar entry: the series it touches and how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<Calendar>,
    /// Its changes outlast it (a deploy's new levels).
    #[serde(skip)]
    lasting: bool,
    #[serde(skip)]
    effects: Vec<Effect>,
}

/// A planned event as an operator writes it in `omen detect`'s `calendar`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calendar {
    /// A Prometheus series selector.
    #[serde(rename = "match")]
    pub select: &'static str,
    pub effect: EventEffect,
}

/// The fleet's series and the live week's events.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub start_ms: i64,
    pub history_days: i64,
    pub live_days: i64,
    pub series: Vec<SeriesSpec>,
    pub windows: Vec<Window>,
}

const SERVICES: [(&str, usize, f64, f64, f64); 6] = [
    // name, instances, requests/s per instance at peak, p99 latency (s), error ratio
    ("web", 3, 120.0, 0.25, 0.002),
    ("api", 3, 200.0, 0.12, 0.003),
    ("orders", 2, 40.0, 0.18, 0.002),
    ("payments", 2, 15.0, 0.30, 0.001),
    ("search", 3, 90.0, 0.08, 0.001),
    ("worker", 2, 25.0, 0.50, 0.004),
];
const DATABASES: [(&str, f64); 4] = [
    ("orders", 0.02),
    ("payments", 0.04),
    ("search", 0.01),
    ("worker", 0.03),
];
const CACHES: [(&str, f64); 3] = [("web", 0.95), ("api", 0.90), ("search", 0.85)];
const HOSTS: [(&str, usize); 4] = [("web", 3), ("app", 7), ("db", 2), ("batch", 2)];
const QUEUES: [(&str, f64); 4] = [
    ("orders-events", 40.0),
    ("emails", 15.0),
    ("payments-retry", 3.0),
    ("search-index", 60.0),
];
/// The service deployed during the live week.
pub const YOUNG: &str = "recommend";
/// Which services call which (what an operator writes in `correlation.dependencies`).
pub const CALLS: [(&str, &[&str]); 3] = [
    ("web", &["api"]),
    ("api", &["orders", "search"]),
    ("orders", &["payments", "worker"]),
];

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// The fleet's series, built up kind by kind.
#[derive(Default)]
struct Catalog(Vec<SeriesSpec>);

impl Catalog {
    fn add(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, shape: Shape) {
        self.0.push(SeriesSpec {
            name,
            labels,
            shape,
            born_ms: i64::MIN,
        });
    }

    /// Per instance of each service: traffic, latencies, errors, in-flight, heap, CPU.
    fn services(&mut self) {
        for (service, instances, peak, latency, errors) in SERVICES {
            for i in 1..=instances {
                let instance = format!("{service}-{i}");
                let l = labels(&[("service", service), ("instance", &instance)]);
                self.add("http_requests_per_second", l.clone(), Shape::Rate { peak });
                let p99 = Shape::Latency { base: latency };
                self.add("http_request_duration_p99_seconds", l.clone(), p99);
                let p50 = Shape::Latency {
                    base: latency / 4.0,
                };
                self.add("http_request_duration_p50_seconds", l.clone(), p50);
                let ratio = Shape::ErrorRatio { base: errors, peak };
                self.add("http_errors_ratio", l.clone(), ratio);
                let inflight = Shape::Inflight { peak, latency };
                self.add("http_inflight_requests", l.clone(), inflight);
                self.add("process_heap_bytes", l.clone(), Shape::Heap { base: 1.0e9 });
                let cpu = Shape::Cpu {
                    idle: 0.05,
                    busy: 0.6,
                };
                self.add("process_cpu_utilisation", l, cpu);
            }
        }
        for (service, latency) in DATABASES {
            let l = labels(&[("service", service)]);
            self.add(
                "db_query_p99_seconds",
                l.clone(),
                Shape::Latency { base: latency },
            );
            let connections = Shape::Connections {
                idle: 4.0,
                busy: 30.0,
            };
            self.add("db_connections", l, connections);
        }
        for (service, ratio) in CACHES {
            let l = labels(&[("service", service)]);
            self.add("cache_hit_ratio", l, Shape::HitRatio { base: ratio });
        }
    }

    /// Per host: CPU, memory, disk, network and open files.
    fn hosts(&mut self) {
        for (role, count) in HOSTS {
            for i in 1..=count {
                let host = format!("{role}-host-{i}");
                let l = labels(&[("host", &host), ("role", role)]);
                let busy = if role == "batch" { 0.1 } else { 0.5 };
                self.add(
                    "node_cpu_utilisation",
                    l.clone(),
                    Shape::Cpu { idle: 0.04, busy },
                );
                let memory = Shape::Memory { base: 6.0e9 };
                self.add("node_memory_used_bytes", l.clone(), memory);
                let disk = Shape::Disk {
                    base: 120.0e9,
                    per_day: 4.0e9,
                };
                self.add("node_disk_used_bytes", l.clone(), disk);
                let network = Shape::Rate { peak: 2.0e6 };
                self.add("node_network_receive_bytes_per_second", l.clone(), network);
                let files = Shape::Connections {
                    idle: 300.0,
                    busy: 900.0,
                };
                self.add("node_open_fds", l, files);
            }
        }
    }

    /// The worker's queues and the batch jobs.
    fn queues_and_jobs(&mut self) {
        for (queue, mean) in QUEUES {
            let l = labels(&[("queue", queue), ("service", "worker")]);
            self.add("queue_depth", l.clone(), Shape::QueueDepth { mean });
            let consumed = Shape::Rate { peak: mean / 2.0 };
            self.add("queue_consumed_per_second", l, consumed);
        }
        for (job, rows, every_ms, at_ms, runs_ms) in [
            (
                "nightly-export",
                5_000.0,
                DAY_MS,
                2 * HOUR_MS,
                20 * MINUTE_MS,
            ),
            ("hourly-rollup", 800.0, HOUR_MS, 0, 3 * MINUTE_MS),
        ] {
            let batch = Shape::Batch {
                rows,
                every_ms,
                at_ms,
                runs_ms,
            };
            self.add("batch_rows_per_second", labels(&[("task", job)]), batch);
        }
    }

    /// The service deployed during the live week, from `born_ms`.
    fn young(&mut self, born_ms: i64) {
        let young = labels(&[("service", YOUNG), ("instance", "recommend-1")]);
        self.add(
            "http_requests_per_second",
            young.clone(),
            Shape::Rate { peak: 30.0 },
        );
        let ratio = Shape::ErrorRatio {
            base: 0.01,
            peak: 30.0,
        };
        self.add("http_errors_ratio", young, ratio);
        let queue = labels(&[("queue", "recommend-jobs"), ("service", YOUNG)]);
        self.add("queue_depth", queue, Shape::QueueDepth { mean: 25.0 });
        for series in self.0.iter_mut().rev().take(3) {
            series.born_ms = born_ms;
        }
    }
}

fn catalog(young_born_ms: i64) -> Vec<SeriesSpec> {
    let mut catalog = Catalog::default();
    catalog.services();
    catalog.hosts();
    catalog.queues_and_jobs();
    catalog.young(young_born_ms);
    catalog.0
}

/// Share of a weekday's peak traffic at `ms`: lowest around 04:00, a late-morning and an
/// evening hump; weekends (the week starts on a Monday) are quieter.
fn load(ms: i64) -> f64 {
    let hours = ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    let hump = |centre: f64, width: f64| (-((hours - centre) / width).powi(2)).exp();
    let day = 0.15 + 0.85 * (0.9 * hump(11.5, 3.5) + hump(20.0, 2.5)).min(1.0);
    let weekday = ms.div_euclid(DAY_MS).rem_euclid(7);
    let week = match weekday {
        5 => 0.75,
        6 => 0.65,
        _ => 1.0,
    };
    day * week
}

/// The effect of a change on one metric of the series whose `label` is one of `values`.
fn on(
    name: &'static str,
    label: &'static str,
    values: &'static [&'static str],
    change: Change,
) -> Effect {
    Effect {
        target: Target {
            name: Some(name),
            label,
            values,
        },
        change,
    }
}

fn scale(factor: f64, ramp_ms: i64) -> Change {
    Change::Scale { factor, ramp_ms }
}

impl Window {
    fn incident(
        name: &'static str,
        (start_ms, end_ms): (i64, i64),
        service: &'static str,
        effects: Vec<Effect>,
    ) -> Self {
        Self {
            name,
            kind: Kind::Incident,
            start_ms,
            end_ms,
            service,
            slow: false,
            calendar: None,
            lasting: false,
            effects,
        }
    }

    fn slow(self) -> Self {
        Self { slow: true, ..self }
    }

    fn planned(self, select: &'static str, effect: EventEffect) -> Self {
        Self {
            kind: Kind::Planned,
            calendar: Some(Calendar { select, effect }),
            ..self
        }
    }

    fn lasting(self) -> Self {
        Self {
            lasting: true,
            ..self
        }
    }
}

/// The live week's incidents and planned events, from `live` (a Monday midnight).
fn windows(live: i64) -> Vec<Window> {
    let at = |day: i64, hour: i64, minute: i64| {
        live + day * DAY_MS + hour * HOUR_MS + minute * MINUTE_MS
    };
    const CAMPAIGN: &[&str] = &["web", "api", "search"];
    let p99 = "http_request_duration_p99_seconds";
    vec![
        Window::incident(
            "api deploy (in the calendar): latency down, heap up, for good",
            (at(1, 11, 0), at(1, 13, 0)),
            "api",
            vec![
                on(p99, "service", &["api"], scale(0.85, 0)),
                on("process_heap_bytes", "service", &["api"], scale(1.15, 0)),
            ],
        )
        .planned(r#"{service="api"}"#, EventEffect::Shift)
        .lasting(),
        Window::incident(
            "payments database slows: payments, orders and api answer slower",
            (at(1, 15, 0), at(1, 15, 45)),
            "payments",
            vec![
                on("db_query_p99_seconds", "service", &["payments"], scale(8.0, 2 * MINUTE_MS)),
                on(p99, "service", &["payments"], scale(6.0, 3 * MINUTE_MS)),
                on(p99, "service", &["orders"], scale(3.0, 4 * MINUTE_MS)),
                on("http_inflight_requests", "service", &["payments"], scale(5.0, 3 * MINUTE_MS)),
            ],
        ),
        Window::incident(
            "api error burst",
            (at(2, 10, 0), at(2, 10, 20)),
            "api",
            vec![
                on("http_errors_ratio", "service", &["api"], Change::Set { value: 0.12 }),
                on("http_errors_ratio", "service", &["web"], Change::Set { value: 0.05 }),
            ],
        ),
        Window::incident(
            "recommend, deployed minutes ago, fails: 5xx ratio and queue jump",
            (at(2, 14, 12), at(2, 14, 35)),
            YOUNG,
            vec![
                on("http_errors_ratio", "service", &[YOUNG], Change::Set { value: 0.44 }),
                on("queue_depth", "service", &[YOUNG], Change::Set { value: 221.0 }),
            ],
        ),
        Window::incident(
            "memory leak in search-2 until it is restarted",
            (at(3, 1, 0), at(3, 9, 0)),
            "search",
            vec![
                on("process_heap_bytes", "instance", &["search-2"], Change::Grow { per_hour: 0.05 }),
                on("process_cpu_utilisation", "instance", &["search-2"], Change::Grow { per_hour: 0.04 }),
            ],
        )
        .slow(),
        Window::incident(
            "marketing campaign (in the calendar): traffic x2",
            (at(3, 18, 0), at(3, 21, 0)),
            "web",
            vec![
                on("http_requests_per_second", "service", CAMPAIGN, scale(2.0, 0)),
                on("http_inflight_requests", "service", CAMPAIGN, scale(2.0, 0)),
            ],
        )
        .planned(
            r#"{__name__=~"http_requests_per_second|http_inflight_requests",service=~"web|api|search"}"#,
            EventEffect::Scale { factor: 2.0 },
        ),
        Window::incident(
            "search's midday peak does not come",
            (at(4, 10, 30), at(4, 14, 0)),
            "search",
            vec![
                on("http_requests_per_second", "service", &["search"], scale(0.35, 15 * MINUTE_MS)),
                on("http_inflight_requests", "service", &["search"], scale(0.35, 15 * MINUTE_MS)),
            ],
        ),
        Window::incident(
            "the orders-events queue is stuck: nothing consumed, depth grows",
            (at(5, 9, 0), at(5, 9, 40)),
            "worker",
            vec![
                on("queue_depth", "queue", &["orders-events"], Change::Accumulate { per_minute: 60.0 }),
                on("queue_consumed_per_second", "queue", &["orders-events"], Change::Set { value: 0.0 }),
            ],
        ),
        Window::incident(
            "the emails consumer slows: its queue grows for hours",
            (at(6, 8, 0), at(6, 11, 0)),
            "worker",
            vec![
                on("queue_depth", "queue", &["emails"], Change::Accumulate { per_minute: 1.5 }),
                on("queue_consumed_per_second", "queue", &["emails"], scale(0.6, 30 * MINUTE_MS)),
            ],
        )
        .slow(),
    ]
}

impl Fleet {
    /// `history_days` of normal weeks from `start_ms` (a Monday midnight), then a live
    /// week with its events.
    pub fn new(start_ms: i64, history_days: i64) -> Self {
        let live = start_ms + history_days * DAY_MS;
        Self {
            start_ms,
            history_days,
            live_days: 7,
            series: catalog(live + 2 * DAY_MS + 14 * HOUR_MS),
            windows: windows(live),
        }
    }

    pub fn live_start_ms(&self) -> i64 {
        self.start_ms + self.history_days * DAY_MS
    }

    pub fn end_ms(&self) -> i64 {
        self.live_start_ms() + self.live_days * DAY_MS
    }

    /// Every series' value at each minute from `start_ms` to `end_ms` (exclusive), in time
    /// order: `emit(minute_ms, series_index, value)`. Deterministic for a seed.
    pub fn generate(&self, seed: u64, mut emit: impl FnMut(i64, usize, f64)) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut state = vec![[0.0; 2]; self.series.len()];
        let mut t = self.start_ms;
        while t < self.end_ms() {
            for (index, series) in self.series.iter().enumerate() {
                if t < series.born_ms {
                    continue;
                }
                let normal = value(series.shape, t, &mut rng, &mut state[index]);
                emit(t, index, self.disturbed(series, t, normal));
            }
            t += MINUTE_MS;
        }
    }

    /// `value` with every window's change in force at `t` applied.
    fn disturbed(&self, series: &SeriesSpec, t: i64, mut value: f64) -> f64 {
        let active = |w: &&Window| w.start_ms <= t && (t < w.end_ms || w.lasting);
        for window in self.windows.iter().filter(active) {
            let since = (t - window.start_ms) as f64;
            for effect in window.effects.iter().filter(|e| e.target.matches(series)) {
                value = match effect.change {
                    Change::Scale { factor, ramp_ms } => {
                        let share = if ramp_ms == 0 {
                            1.0
                        } else {
                            (since / ramp_ms as f64).min(1.0)
                        };
                        value * (1.0 + (factor - 1.0) * share)
                    }
                    Change::Grow { per_hour } => value * (1.0 + per_hour * since / HOUR_MS as f64),
                    Change::Accumulate { per_minute } => {
                        value + per_minute * since / MINUTE_MS as f64
                    }
                    Change::Set { value: set } => set * (1.0 + 0.05 * (since / 7.0e4).sin()),
                };
            }
        }
        value
    }
}

/// A normal value of a series at `t`; `state` carries what a series remembers (its
/// disk's fill, its queue).
fn value(shape: Shape, t: i64, rng: &mut Xoshiro256PlusPlus, state: &mut [f64; 2]) -> f64 {
    let l = load(t);
    let noise = |rng: &mut Xoshiro256PlusPlus, sd: f64| {
        LogNormal::new(0.0, sd).map_or(1.0, |d| d.sample(rng))
    };
    let gauss =
        |rng: &mut Xoshiro256PlusPlus, sd: f64| Normal::new(0.0, sd).map_or(0.0, |d| d.sample(rng));
    match shape {
        Shape::Rate { peak } => {
            let mean = peak * l;
            // A minute's count, over 60: Poisson noise plus some burstiness.
            let count = Poisson::new((mean * 60.0).max(1e-3)).map_or(0.0, |d| d.sample(rng));
            count / 60.0 * noise(rng, 0.03)
        }
        Shape::Latency { base } => {
            let spike = if rng.gen_bool(0.0005) { 1.5 } else { 1.0 };
            base * (1.0 + 0.3 * l) * noise(rng, 0.06) * spike
        }
        Shape::ErrorRatio { base, peak } => {
            // Over about the last five minutes, as `rate(errors[5m]) / rate(requests[5m])`.
            let requests = (peak * l * 60.0).max(1.0);
            let errors = Poisson::new(requests * base).map_or(0.0, |d| d.sample(rng));
            state[0] = 0.8 * state[0] + errors;
            state[1] = 0.8 * state[1] + requests;
            state[0] / state[1]
        }
        Shape::Inflight { peak, latency } => {
            let mean = peak * l * latency * 0.5;
            Poisson::new(mean.max(1e-3)).map_or(0.0, |d| d.sample(rng))
        }
        Shape::Heap { base } => {
            // Collected every 12 minutes: grows by a fifth between collections.
            let phase = (t.rem_euclid(12 * MINUTE_MS)) as f64 / (12 * MINUTE_MS) as f64;
            base * (1.0 + 0.2 * phase * (0.5 + l)) * noise(rng, 0.01)
        }
        Shape::Cpu { idle, busy } => (idle + busy * l + gauss(rng, 0.015)).clamp(0.0, 1.0),
        Shape::Memory { base } => base * (1.0 + 0.1 * l) * noise(rng, 0.005),
        Shape::Disk { base, per_day } => {
            let minute_of_day = t.rem_euclid(DAY_MS) / MINUTE_MS;
            if minute_of_day == 30 {
                state[0] = 0.0;
            }
            state[0] += per_day / 1440.0 * (0.5 + l);
            base + state[0]
        }
        Shape::Connections { idle, busy } => (idle + busy * l + gauss(rng, (busy * 0.05).max(1.0)))
            .round()
            .max(0.0),
        Shape::HitRatio { base } => (base - 0.03 * l + gauss(rng, 0.004)).clamp(0.0, 1.0),
        Shape::QueueDepth { mean } => {
            // An autoregressive depth around `mean` times the load.
            let target = mean * (0.3 + l);
            state[0] = (state[0] * 0.8 + target * 0.2 + gauss(rng, target.sqrt())).max(0.0);
            state[0].round()
        }
        Shape::Batch {
            rows,
            every_ms,
            at_ms,
            runs_ms,
        } => {
            let into = (t - at_ms).rem_euclid(every_ms);
            if into < runs_ms {
                rows * noise(rng, 0.05)
            } else {
                0.0
            }
        }
    }
}
