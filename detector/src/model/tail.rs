//! The band calibrated to a series' own tail: `band` scales cover 99.9% of Gaussian
//! residuals, but a series of few events (an error ratio at night) leaves a band of that
//! width far more often, and every such point reads as evidence of an incident. The
//! baseline keeps a decaying histogram of its residuals in scales, `|z|`, and widens the
//! band to their 99.9th percentile once it has seen enough of them, never beyond twice
//! the configured band: an incident's own points, learnt too, must not teach the band to
//! ignore the next one.

use serde::{Deserialize, Serialize};

/// Histogram bins: edge `k` is `FIRST_EDGE * 2^(k / 4)`, from 1 to about 45 scales.
const BINS: usize = 23;
const FIRST_EDGE: f64 = 1.0;
/// Weight of a point against the ones before: about the last 10,000 points count.
const RATE: f64 = 1e-4;
/// The share of residuals the band should cover.
const COVER: f64 = 0.999;
/// Points seen before the band is calibrated: five expected in the tail.
const MIN_POINTS: f64 = 5.0 / (1.0 - COVER);

fn edge(k: usize) -> f64 {
    FIRST_EDGE * (k as f64 / 4.0).exp2()
}

/// Decaying counts of `|z|` above each edge's bin. Restored counts must be none or one
/// per bin (a corrupt snapshot is refused, never indexed out of bounds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ZTailState")]
pub struct ZTail {
    /// Weight of the points in each bin (`counts[k]`: `|z|` in `[edge(k), edge(k + 1))`);
    /// the last bin is open-ended; residuals under the first edge are only in `total`.
    counts: Vec<f32>,
    total: f64,
    /// The weight the next point gets: it grows instead of every count decaying, and all
    /// are rescaled once it is large.
    weight: f64,
    /// Points seen (not decayed).
    seen: u64,
}

/// [`ZTail`] as read, before its bins are counted.
#[derive(Deserialize)]
struct ZTailState {
    counts: Vec<f32>,
    total: f64,
    weight: f64,
    seen: u64,
}

impl TryFrom<ZTailState> for ZTail {
    type Error = String;

    fn try_from(state: ZTailState) -> Result<Self, String> {
        if !state.counts.is_empty() && state.counts.len() != BINS {
            return Err(format!("a tail of {} bins, not {BINS}", state.counts.len()));
        }
        Ok(Self {
            counts: state.counts,
            total: state.total,
            weight: state.weight,
            seen: state.seen,
        })
    }
}

impl ZTail {
    /// Learns one residual, in scales.
    pub fn learn(&mut self, z: f64) {
        if !z.is_finite() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0.0; BINS];
            self.weight = 1.0;
        }
        let z = z.abs();
        if z >= FIRST_EDGE {
            let bin = ((z / FIRST_EDGE).log2() * 4.0).floor() as usize;
            self.counts[bin.min(BINS - 1)] += self.weight as f32;
        }
        self.total += self.weight;
        self.seen = self.seen.saturating_add(1);
        self.weight /= 1.0 - RATE;
        if self.weight > 1e6 {
            let rescale = 1.0 / self.weight;
            self.counts.iter_mut().for_each(|c| *c *= rescale as f32);
            self.total *= rescale;
            self.weight = 1.0;
        }
    }

    /// The band's width in scales: `band`, or the 99.9th percentile of `|z|` when that is
    /// wider, at most `2 * band`.
    pub fn band(&self, band: f64) -> f64 {
        if (self.seen as f64) < MIN_POINTS || self.total <= 0.0 {
            return band;
        }
        let allowed = (1.0 - COVER) * self.total;
        let mut above = 0.0;
        for k in (0..BINS).rev() {
            let count = f64::from(self.counts[k]);
            if above + count > allowed {
                // The tail crosses inside bin k: taking its points as spread evenly in
                // log |z|, the percentile is this far down from its upper edge.
                let down = (allowed - above) / count;
                let (low, high) = (edge(k).ln(), edge(k + 1).ln());
                return (high - down * (high - low)).exp().clamp(band, 2.0 * band);
            }
            above += count;
        }
        band
    }

    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic residuals: Gaussian-like (a sum of uniforms) or heavy-tailed.
    fn residuals(heavy: bool) -> impl Iterator<Item = f64> {
        let mut state = 12345u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..50_000).map(move |_| {
            let normal = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
            if heavy {
                // One point in fifty is five times bigger.
                if uniform() < 0.02 {
                    normal * 5.0
                } else {
                    normal
                }
            } else {
                normal
            }
        })
    }

    #[test]
    fn gaussian_residuals_keep_the_configured_band() {
        let mut tail = ZTail::default();
        // In scales of the mean absolute residual (0.8 of a standard deviation).
        residuals(false).for_each(|z| tail.learn(z / 0.8));
        // Their 99.9th percentile is 3.29 standard deviations, 4.1 such scales.
        let band = tail.band(4.0);
        assert!((4.0..4.4).contains(&band), "{band}");
    }

    #[test]
    fn heavy_tails_widen_the_band_up_to_twice() {
        let mut tail = ZTail::default();
        residuals(true).for_each(|z| tail.learn(z / 0.8));
        let band = tail.band(4.0);
        assert!(band > 4.0 && band <= 8.0, "{band}");
    }

    #[test]
    fn too_few_points_say_nothing() {
        let mut tail = ZTail::default();
        residuals(true)
            .take(1000)
            .for_each(|z| tail.learn(z * 10.0));
        assert_eq!(tail.band(4.0), 4.0);
    }
}
