//! Repeated failures of one thing (a file that cannot be opened or read, a rules file that
//! cannot be read) are logged with backoff: the first at once, then after 1 s, 2 s, 4 s …
//! and at most every 5 minutes, each line saying how many failures went unlogged since
//! the last. A success starts it again from the first. The failures themselves are still
//! counted where they happen; only the log is thinned (vector's internal-events habit).

use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const LONGEST_DELAY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default)]
pub struct LogBackoff {
    /// When the next failure may be logged; `None` while nothing is failing.
    next: Option<Instant>,
    delay: Duration,
    unlogged: u64,
}

impl LogBackoff {
    /// A failure at `now`: `Some(unlogged)` when it is to be logged (with the failures not
    /// logged since the last one), `None` when it is to be skipped.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(next) if now < next => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.delay = match self.next {
                    None => FIRST_DELAY,
                    Some(_) => (self.delay * 2).min(LONGEST_DELAY),
                };
                self.next = Some(now + self.delay);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }

    /// A success: true when it ends a run of failures (worth a line of its own).
    pub fn succeeded(&mut self) -> bool {
        let was_failing = self.next.is_some();
        *self = Self::default();
        was_failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_every_quarter_second_are_logged_ever_more_rarely_until_one_succeeds() {
        let start = Instant::now();
        let mut backoff = LogBackoff::default();
        let mut logged = Vec::new();
        for i in 0..4_000u64 {
            let now = start + Duration::from_millis(250 * i);
            if let Some(unlogged) = backoff.failed(now) {
                logged.push((i, unlogged));
            }
        }
        // Quarter-seconds 0, 4, 12, 28, 60, … (1, 2, 4, 8 s apart), at most 5 minutes.
        let at: Vec<u64> = logged.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, [0, 4, 12, 28, 60, 124, 252, 508, 1_020, 2_044, 3_244]);
        assert_eq!(logged[1].1, 3);
        assert_eq!(logged[10].1, 1_199);
        // 1,000 s of failures: 11 lines, not 4,000.
        assert!(backoff.succeeded());
        assert!(!backoff.succeeded());
        assert_eq!(backoff.failed(start), Some(0));
    }
}
