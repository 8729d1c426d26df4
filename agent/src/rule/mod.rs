//! Rules: from parsed records to metric updates. A rules file is validated without I/O
//! into a [`RuleSet`] (`RuleSet::validate`), and only then installed into a registry, so
//! an invalid file never disturbs the rules already running.
//!
//! Every rule's metrics are defined as families in the registry; a reload that keeps a
//! metric's definition (kind, labels, buckets) keeps its series, and a pair rule whose
//! key, timeout and labels are unchanged keeps its open starts. Framing (how bytes become
//! records) is not the rules' business: `source::Framing` is built beside them.

mod build;
mod counter;
mod gauge;
mod histogram;
mod matcher;
mod pair;
mod parts;
mod patterns;
mod set;

pub use build::SELF_METRIC_PREFIX;
pub use counter::CounterRule;
pub use gauge::GaugeRule;
pub use histogram::HistogramRule;
pub use matcher::{Event, FieldRef, MatchPlan, Matcher};
pub use pair::{PairOutcome, PairRule, PairSnapshot};
pub use parts::{ApplyError, DefinedFamily, Labels, ValueSource};
pub use patterns::{PatternsRule, PatternsSnapshot};
pub use set::{Rule, RuleSet};
