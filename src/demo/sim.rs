//! The demo's inventory service, simulated minute by minute: orders follow a day/night
//! curve with a sale peak at noon; each order decrements stock in Redis, publishes its
//! Kafka event a little later and serves a few HTTP requests; rows are hard-deleted now and
//! then. Incidents are injected on the live day: a crash window in which publishes go
//! missing, a burst of hard deletes, and a sale peak that does not come.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

use omen_detector::series::format_rfc3339;

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Orders per minute at the quietest hour, at the busiest, and on top during the sale.
const ORDERS_NIGHT: f64 = 12.0;
const ORDERS_DAY: f64 = 40.0;
const ORDERS_SALE: f64 = 160.0;
/// The daily sale: noon to one o'clock, ramping over five minutes.
const SALE_START_MS: i64 = 12 * HOUR_MS;
const SALE_END_MS: i64 = 13 * HOUR_MS;
const SALE_RAMP_MS: f64 = 5.0 * MINUTE_MS as f64;
/// Item page views per order.
const VIEWS_PER_ORDER: f64 = 2.0;
/// Hard deletes per minute and table at the busiest hour.
const DELETES_DAY: f64 = 1.5;
const TABLES: [&str; 2] = ["orders", "carts"];
/// During the crash window this share of publishes never happens.
const CRASH_LOSS: f64 = 0.5;
/// Hard deletes per minute added during the burst.
const BURST_DELETES: f64 = 60.0;

/// What kind of trouble is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The service dies between Redis and Kafka: publishes go missing.
    CrashWindow,
    /// Someone deletes rows of `orders` in bulk.
    HardDeleteBurst,
    /// The daily sale does not happen (a broken campaign, a dead checkout).
    MissingSalePeak,
    /// The payments service, called by checkout, slows down: seen only in spans.
    SlowPayments,
}

impl Trouble {
    pub fn describe(self) -> &'static str {
        match self {
            Self::CrashWindow => "crash window: half the Kafka publishes lost",
            Self::HardDeleteBurst => "hard-delete burst on table orders",
            Self::MissingSalePeak => "the noon sale peak does not come",
            Self::SlowPayments => "payments, behind checkout, answers 8x slower (spans only)",
        }
    }
}

/// One injected incident, in simulated time.
#[derive(Debug, Clone, Copy)]
pub struct Injected {
    pub trouble: Trouble,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The days simulated and what goes wrong when.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub start_ms: i64,
    /// Days of history learnt before the live day.
    pub history_days: i64,
    pub injected: Vec<Injected>,
}

impl Scenario {
    /// `history_days` of normal days from `start_ms` (a midnight), then one live day with
    /// the four incidents.
    pub fn new(start_ms: i64, history_days: i64) -> Self {
        let live = start_ms + history_days * DAY_MS;
        let at = |hour: i64, minute: i64| live + hour * HOUR_MS + minute * MINUTE_MS;
        Self {
            start_ms,
            history_days,
            injected: vec![
                Injected {
                    trouble: Trouble::CrashWindow,
                    start_ms: at(9, 30),
                    end_ms: at(9, 40),
                },
                Injected {
                    trouble: Trouble::MissingSalePeak,
                    start_ms: at(12, 0),
                    end_ms: at(13, 0),
                },
                Injected {
                    trouble: Trouble::SlowPayments,
                    start_ms: at(14, 30),
                    end_ms: at(14, 50),
                },
                Injected {
                    trouble: Trouble::HardDeleteBurst,
                    start_ms: at(16, 0),
                    end_ms: at(16, 10),
                },
            ],
        }
    }

    pub fn live_start_ms(&self) -> i64 {
        self.start_ms + self.history_days * DAY_MS
    }

    pub fn end_ms(&self) -> i64 {
        self.live_start_ms() + DAY_MS
    }

    pub fn active(&self, trouble: Trouble, at_ms: i64) -> bool {
        self.injected
            .iter()
            .any(|i| i.trouble == trouble && (i.start_ms..i.end_ms).contains(&at_ms))
    }
}

/// Writes the service's log lines.
pub struct Generator {
    scenario: Scenario,
    rng: Xoshiro256PlusPlus,
    next_order: u64,
    publish_delay: Exp<f64>,
    latency_ms: LogNormal<f64>,
}

/// Share of the day's peak traffic at `ms` (a smooth day/night curve, lowest at 03:00).
pub fn daily_shape(ms: i64) -> f64 {
    let hours = ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    0.5 - 0.5 * ((hours - 3.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// How far into the sale `ms` is: 0 outside, 1 at full strength, ramps at both ends.
fn sale_strength(ms: i64) -> f64 {
    let of_day = ms.rem_euclid(DAY_MS);
    if !(SALE_START_MS..SALE_END_MS).contains(&of_day) {
        return 0.0;
    }
    let from_edge = (of_day - SALE_START_MS).min(SALE_END_MS - of_day) as f64;
    (from_edge / SALE_RAMP_MS).min(1.0)
}

fn poisson(rng: &mut Xoshiro256PlusPlus, mean: f64) -> u64 {
    match Poisson::new(mean) {
        Ok(distribution) => distribution.sample(rng) as u64,
        Err(_) => 0,
    }
}

impl Generator {
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        Self {
            scenario,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            next_order: 1,
            publish_delay: Exp::new(1.0 / 150.0).expect("positive rate"),
            latency_ms: LogNormal::new(4.0, 0.5).expect("finite parameters"),
        }
    }

    /// The lines of the minute starting at `minute_ms`, in time order.
    pub fn minute(&mut self, minute_ms: i64) -> Vec<String> {
        let shape = daily_shape(minute_ms);
        let mut orders = ORDERS_NIGHT + (ORDERS_DAY - ORDERS_NIGHT) * shape;
        if !self.scenario.active(Trouble::MissingSalePeak, minute_ms) {
            orders += ORDERS_SALE * sale_strength(minute_ms);
        }
        let crash = self.scenario.active(Trouble::CrashWindow, minute_ms);
        let mut events: Vec<(i64, String)> = Vec::new();
        for _ in 0..poisson(&mut self.rng, orders) {
            let at = minute_ms + self.rng.gen_range(0..MINUTE_MS);
            let order = self.next_order;
            self.next_order += 1;
            let sku = self.rng.gen_range(1..500);
            events.push((
                at,
                format!("level=info msg=\"stock decremented\" order_id=o{order} sku=s{sku} qty=1 backend=redis"),
            ));
            if !(crash && self.rng.gen_bool(CRASH_LOSS)) {
                let delay = self.publish_delay.sample(&mut self.rng).min(5_000.0) as i64;
                events.push((
                    at + 1 + delay,
                    format!("level=info msg=\"event published\" order_id=o{order} topic=orders backend=kafka"),
                ));
            }
            let latency = self.latency_ms.sample(&mut self.rng).round();
            events.push((
                at + 2,
                format!(
                    "level=info method=POST path=/api/v1/orders status=200 latency_ms={latency}"
                ),
            ));
        }
        for _ in 0..poisson(&mut self.rng, orders * VIEWS_PER_ORDER) {
            let at = minute_ms + self.rng.gen_range(0..MINUTE_MS);
            let item = self.rng.gen_range(1..500);
            let latency = (self.latency_ms.sample(&mut self.rng) * 0.5).round();
            events.push((
                at,
                format!("level=info method=GET path=/api/v1/items/{item} status=200 latency_ms={latency}"),
            ));
        }
        let burst = self.scenario.active(Trouble::HardDeleteBurst, minute_ms);
        for table in TABLES {
            let mut mean = DELETES_DAY * (0.3 + 0.7 * shape);
            if burst && table == "orders" {
                mean += BURST_DELETES;
            }
            for _ in 0..poisson(&mut self.rng, mean) {
                let at = minute_ms + self.rng.gen_range(0..MINUTE_MS);
                let id = self.rng.gen_range(1..1_000_000);
                events.push((
                    at,
                    format!("level=warn msg=\"hard-delete\" table={table} id={id} actor=admin"),
                ));
            }
        }
        events.sort_by_key(|(at, _)| *at);
        events
            .into_iter()
            .map(|(at, text)| format!("{} {text}", format_rfc3339(at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_peaks_at_the_sale_and_the_live_day_misses_it() {
        let scenario = Scenario::new(0, 1);
        let mut generator = Generator::new(scenario, 1);
        let orders = |g: &mut Generator, ms: i64| {
            g.minute(ms)
                .iter()
                .filter(|l| l.contains("stock decremented"))
                .count()
        };
        let night = orders(&mut generator, 3 * HOUR_MS);
        let sale = orders(&mut generator, 12 * HOUR_MS + 30 * MINUTE_MS);
        let missed = orders(&mut generator, DAY_MS + 12 * HOUR_MS + 30 * MINUTE_MS);
        assert!(
            night < 30 && sale > 150 && missed < 80,
            "{night} {sale} {missed}"
        );
    }

    #[test]
    fn publishes_go_missing_only_in_the_crash_window() {
        let scenario = Scenario::new(0, 0);
        let crash = scenario.injected[0];
        let mut generator = Generator::new(scenario, 2);
        let lost = |g: &mut Generator, ms: i64| {
            let lines = g.minute(ms);
            let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
            count("stock decremented") - count("event published")
        };
        assert_eq!(lost(&mut generator, crash.start_ms - MINUTE_MS), 0);
        assert!(lost(&mut generator, crash.start_ms) > 3);
        let lines = generator.minute(crash.end_ms);
        assert!(
            lines.windows(2).all(|w| w[0] <= w[1]),
            "lines are in time order"
        );
    }
}
