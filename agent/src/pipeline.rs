//! The pipeline: records from sources → parse → rules → registry, plus the agent's
//! self-metrics. Rules are applied on one thread, in order (reader threads may parse and
//! match ahead, see `ParsedBatch`), so a snapshot taken between batches is a consistent
//! cut: source positions agree with every value.
//!
//! Per-record work avoids the registry for self-metrics: counts accumulate in plain
//! fields and are flushed once per batch (`end_batch`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::{ConfigError, RulesConfig};
use crate::parse::{self, EventTime, ParsedBatch, Parser, Record, Scratch};
use crate::registry::{FamilyDesc, FamilyId, FamilySnapshot, MetricKind, Registry};
use crate::rule::{PairOutcome, PairSnapshot, PatternsSnapshot, RuleSet, SELF_METRIC_PREFIX};
use crate::source::{Framing, Preparer, RecordSink, SourceEvent, StreamId};

/// Event times further ahead of the clock than this are counted as bad, not used.
const MAX_FUTURE_SKEW_NS: i64 = 24 * 3600 * 1_000_000_000;

struct SelfMetrics {
    lines: FamilyId,
    bytes: FamilyId,
    errors: FamilyId,
    matches: FamilyId,
    source_events: FamilyId,
    series_dropped: FamilyId,
    pair_open: FamilyId,
    pair_overflow: FamilyId,
    pattern_templates: FamilyId,
    pattern_evictions: FamilyId,
    source_files: FamilyId,
    newest_event: FamilyId,
    pub(crate) reloads: FamilyId,
    pub(crate) checkpoint_writes: FamilyId,
    pub(crate) checkpoint_age: FamilyId,
    otlp_exports: FamilyId,
}

impl SelfMetrics {
    fn define(registry: &mut Registry) -> Self {
        let limit = 10_000;
        let mut def = |name: &str, help: &str, kind: MetricKind, labels: &[&str]| {
            registry.define(
                FamilyDesc::new(format!("{SELF_METRIC_PREFIX}{name}"), help, kind)
                    .labels(labels.iter().copied()),
                limit,
            )
        };
        use MetricKind::{Counter, Gauge};
        Self {
            lines: def(
                "lines_total",
                "Records read, per stream.",
                Counter,
                &["stream"],
            ),
            bytes: def(
                "bytes_total",
                "Bytes read, per stream.",
                Counter,
                &["stream"],
            ),
            errors: def(
                "errors_total",
                "Records or values that could not be used, by stage and reason.",
                Counter,
                &["stage", "reason"],
            ),
            matches: def(
                "rule_matches_total",
                "Records that matched each rule.",
                Counter,
                &["rule"],
            ),
            source_events: def(
                "source_events_total",
                "File rotations, truncations, truncations whose unread rest was found nowhere (lost), and read errors, per stream.",
                Counter,
                &["stream", "event"],
            ),
            series_dropped: def(
                "series_dropped_total",
                "Updates folded into the overflow series past a metric's cardinality budget.",
                Counter,
                &["metric"],
            ),
            pair_open: def(
                "pair_open_keys",
                "Open starts held by each pair rule.",
                Gauge,
                &["rule"],
            ),
            pair_overflow: def(
                "pair_overflow_total",
                "Starts dropped because a pair rule held max_open starts.",
                Counter,
                &["rule"],
            ),
            pattern_templates: def(
                "pattern_templates",
                "Log templates held by each patterns rule.",
                Gauge,
                &["rule"],
            ),
            pattern_evictions: def(
                "pattern_templates_evicted_total",
                "Log templates evicted (least recently used) to stay within a patterns rule's max_clusters.",
                Counter,
                &["rule"],
            ),
            source_files: def(
                "source_files",
                "Files each file source tails now: 0 while its globs match nothing.",
                Gauge,
                &["source"],
            ),
            newest_event: def(
                "newest_event_time_seconds",
                "The newest event time seen in the logs (pair rules' clock).",
                Gauge,
                &[],
            ),
            reloads: def(
                "reloads_total",
                "Rule reloads, by result.",
                Counter,
                &["result"],
            ),
            checkpoint_writes: def(
                "checkpoint_writes_total",
                "Checkpoint writes, by result.",
                Counter,
                &["result"],
            ),
            checkpoint_age: def(
                "checkpoint_age_seconds",
                "Seconds since the last successful checkpoint (since the start while none has succeeded).",
                Gauge,
                &[],
            ),
            otlp_exports: def(
                "otlp_exports_total",
                "OTLP metric pushes, by result.",
                Counter,
                &["result"],
            ),
        }
    }
}

#[derive(Default)]
struct StreamCounts {
    name: String,
    records: u64,
    bytes: u64,
}

/// Everything the pipeline must save to resume exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSnapshot {
    pub metrics: Vec<FamilySnapshot>,
    pub pairs: BTreeMap<String, PairSnapshot>,
    /// The first rules file's event clock (the only one before several were allowed).
    pub newest_event_ns: Option<i64>,
    /// The last record's event time (absent in checkpoints from before it was kept).
    #[serde(default)]
    pub last_event_ns: Option<i64>,
    /// Each patterns rule's miner (absent in checkpoints from before patterns rules).
    #[serde(default)]
    pub patterns: BTreeMap<String, PatternsSnapshot>,
    /// Every rules file's event clock, by the file's path.
    #[serde(default)]
    pub clocks: BTreeMap<String, EventClock>,
}

/// The logs' own time as one rules file's records tell it: pair rules time out by it.
/// Each rules file has its own, since the logs it reads may run on another clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EventClock {
    pub newest_ns: Option<i64>,
    /// The previous record's event time, which a jump of the clock must be confirmed by.
    pub last_ns: Option<i64>,
}

/// One rules file at work: its parser, framing, compiled rules and event clock. Sources
/// are bound to one group each (`Pipeline::select`); metrics of all groups share one
/// registry, so a metric name belongs to one rules file only.
struct RulesGroup {
    path: std::path::PathBuf,
    parser: Parser,
    /// How sources cut their bytes into records, from the same rules file.
    framing: Framing,
    rules: RuleSet,
    rule_matches: Vec<u64>,
    clock: EventClock,
}

impl EventClock {
    /// Moves the clock to a record's `time` and gives its new reading. It moves to the
    /// newest time seen, except by a jump longer than the shortest pair timeout, which
    /// would expire open starts at once: that needs a second record as far ahead, so that
    /// one line stamped hours ahead of its neighbours (a wrong clock, a replayed line)
    /// expires nothing. An end read while the clock is held back is still judged by its
    /// own time (`PairRule::apply`).
    fn advance(
        &mut self,
        time: i64,
        shortest_timeout: Option<i64>,
        errors: &mut BTreeMap<(&'static str, &'static str), u64>,
    ) -> i64 {
        let believed = match (self.newest_ns, shortest_timeout) {
            (Some(clock), Some(timeout)) if time > clock.saturating_add(timeout) => {
                self.last_ns.map_or(clock, |last| last.min(time))
            }
            _ => time,
        };
        let newest = self.newest_ns.map_or(believed, |n| n.max(believed));
        if let (Some(last), Some(timeout)) = (self.last_ns, shortest_timeout) {
            if last > newest.saturating_add(timeout) {
                // The previous record was that far ahead, alone.
                *errors.entry(("parse", "timestamp_ahead")).or_default() += 1;
            }
        }
        self.last_ns = Some(time);
        self.newest_ns = Some(newest);
        newest
    }
}

impl RulesGroup {
    fn key(&self) -> String {
        self.path.display().to_string()
    }
}

/// Which rules file the records handed in next belong to (`Pipeline::add_rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(pub usize);

pub struct Pipeline {
    pub registry: Registry,
    scratch: Scratch,
    groups: Vec<RulesGroup>,
    /// The group records go to now.
    active: usize,
    self_metrics: SelfMetrics,
    streams: Vec<StreamCounts>,
    stream_ids: HashMap<String, StreamId>,
    errors: BTreeMap<(&'static str, &'static str), u64>,
    now_ns: i64,
    clock: Arc<dyn Clock>,
    /// What `omen agent test` reports besides the metrics; off in the live agent.
    audit: Option<Box<Audit>>,
}

impl Pipeline {
    /// A pipeline running one rules file (more may be added with [`Pipeline::add_rules`]).
    pub fn new(
        config: &RulesConfig,
        path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let mut pipeline = Self::empty(clock);
        pipeline.add_rules(config, path)?;
        Ok(pipeline)
    }

    /// A pipeline with its self-metrics and no rules yet.
    pub fn empty(clock: Arc<dyn Clock>) -> Self {
        let mut registry = Registry::new();
        registry.set_now(clock.now_ns() as f64 / 1e9);
        let self_metrics = SelfMetrics::define(&mut registry);
        Self {
            registry,
            scratch: Scratch::default(),
            groups: Vec::new(),
            active: 0,
            self_metrics,
            streams: Vec::new(),
            stream_ids: HashMap::new(),
            errors: BTreeMap::new(),
            now_ns: clock.now_ns(),
            clock,
            audit: None,
        }
    }

    /// Adds a rules file; records go to it once selected. The same path twice is one
    /// group. A metric another rules file defines already is refused.
    pub fn add_rules(&mut self, config: &RulesConfig, path: &Path) -> Result<GroupId, ConfigError> {
        if let Some(index) = self.groups.iter().position(|g| g.path == path) {
            return Ok(GroupId(index));
        }
        let framing = Framing::from_rules(config, path)?;
        self.check_names(config, path, None)?;
        let rules = RuleSet::install(config, path, &mut self.registry)?;
        self.groups.push(RulesGroup {
            path: path.to_owned(),
            parser: rules.parser.clone(),
            framing,
            rule_matches: vec![0; rules.rules.len()],
            rules,
            clock: EventClock::default(),
        });
        self.retain_defined();
        self.end_batch();
        Ok(GroupId(self.groups.len() - 1))
    }

    /// Refuses rules defining a metric that a rules file other than `replacing` defines.
    fn check_names(
        &self,
        config: &RulesConfig,
        path: &Path,
        replacing: Option<usize>,
    ) -> Result<(), ConfigError> {
        let names = RuleSet::family_names(config, path)?;
        let others = self.groups.iter().enumerate();
        for (_, group) in others.filter(|(index, _)| Some(*index) != replacing) {
            if let Some(name) = group.rules.family_names.intersection(&names).next() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    rule: name.clone(),
                    field: "name".to_owned(),
                    message: format!(
                        "the metric `{name}` is defined in {} as well: each metric belongs to one rules file",
                        group.path.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Drops the series of families no rules file defines any more.
    fn retain_defined(&mut self) {
        let groups = &self.groups;
        self.registry.retain(|desc| {
            desc.name.starts_with(SELF_METRIC_PREFIX)
                || groups
                    .iter()
                    .any(|g| g.rules.family_names.contains(&desc.name))
        });
    }

    /// Records handed in from now on are parsed and counted by the rules of `group`.
    pub fn select(&mut self, group: GroupId) {
        if group.0 < self.groups.len() {
            self.active = group.0;
        }
    }

    /// The rules files in use, in the order they were added.
    pub fn rules_paths(&self) -> impl Iterator<Item = &Path> {
        self.groups.iter().map(|g| g.path.as_path())
    }

    fn group(&self) -> &RulesGroup {
        &self.groups[self.active]
    }

    /// Validates a whole rules file without touching any registry: its framing (parser
    /// and limits sections), then its rules.
    pub fn validate(config: &RulesConfig, path: &Path) -> Result<(), ConfigError> {
        Framing::from_rules(config, path)?;
        RuleSet::validate(config, path)
    }

    /// How sources must cut records for the selected rules.
    pub fn framing(&self) -> &Framing {
        &self.group().framing
    }

    /// How sources of `group` must cut records.
    pub fn framing_of(&self, group: GroupId) -> &Framing {
        &self.groups[group.0].framing
    }

    /// Replaces the rules of `group`; an invalid file leaves the running rules untouched.
    pub fn reload(&mut self, group: GroupId, config: &RulesConfig) -> Result<(), ConfigError> {
        self.end_batch();
        let path = self.groups[group.0].path.clone();
        let result = Framing::from_rules(config, &path).and_then(|framing| {
            RuleSet::validate(config, &path)?;
            self.check_names(config, &path, Some(group.0))?;
            let mut rules = RuleSet::install(config, &path, &mut self.registry)?;
            let running = &mut self.groups[group.0];
            rules.adopt_state(&mut running.rules, &mut self.registry);
            running.parser = rules.parser.clone();
            running.rule_matches = vec![0; rules.rules.len()];
            running.rules = rules;
            running.framing = framing;
            Ok(())
        });
        self.retain_defined();
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.registry
            .inc(self.self_metrics.reloads, &[outcome], 1.0);
        self.end_batch();
        result
    }

    /// Counts a reload that failed before the rules could be built (an unreadable file,
    /// or one that is not a rules file).
    pub fn count_failed_reload(&mut self) {
        self.registry
            .inc(self.self_metrics.reloads, &["failure"], 1.0);
    }

    /// Starts a batch: reads the clock once for read-time stamps and new series.
    pub fn begin_batch(&mut self) {
        self.now_ns = self.clock.now_ns();
        self.registry.set_now(self.now_ns as f64 / 1e9);
    }

    /// Ends a batch: flushes accumulated self-metrics into the registry.
    pub fn end_batch(&mut self) {
        let m = &self.self_metrics;
        for stream in &mut self.streams {
            let labels = [stream.name.as_str()];
            self.registry
                .inc(m.lines, &labels, std::mem::take(&mut stream.records) as f64);
            self.registry
                .inc(m.bytes, &labels, std::mem::take(&mut stream.bytes) as f64);
        }
        for group in &mut self.groups {
            for (index, count) in group.rule_matches.iter_mut().enumerate() {
                let name = [group.rules.names[index].as_str()];
                self.registry
                    .inc(m.matches, &name, std::mem::take(count) as f64);
            }
        }
        let non_finite = self.registry.take_non_finite();
        if non_finite > 0 {
            *self
                .errors
                .entry(("rule", "non_finite_result"))
                .or_default() += non_finite;
        }
        for ((stage, reason), count) in std::mem::take(&mut self.errors) {
            self.registry.inc(m.errors, &[stage, reason], count as f64);
        }
        let dropped: Vec<(String, u64)> = self
            .registry
            .dropped()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        for (name, count) in dropped {
            self.registry
                .set(m.series_dropped, &[name.as_str()], count as f64);
        }
        for pair in self.groups.iter().flat_map(|g| g.rules.pairs()) {
            let name = [pair.name()];
            self.registry
                .set(m.pair_open, &name, pair.open_count() as f64);
            self.registry
                .set(m.pair_overflow, &name, pair.overflow_count() as f64);
        }
        for patterns in self.groups.iter().flat_map(|g| g.rules.patterns()) {
            let name = [patterns.name()];
            let held = patterns.templates().count() as f64;
            self.registry.set(m.pattern_templates, &name, held);
            self.registry
                .set(m.pattern_evictions, &name, patterns.evicted() as f64);
        }
        // One gauge for all rules files: the newest time any of their logs has reached.
        if let Some(newest) = self.groups.iter().filter_map(|g| g.clock.newest_ns).max() {
            self.registry
                .set(m.newest_event, &[] as &[&str], newest as f64 / 1e9);
        }
    }

    /// How many files the file source `source` tails now.
    pub fn set_source_files(&mut self, source: &str, files: usize) {
        self.registry
            .set(self.self_metrics.source_files, &[source], files as f64);
    }

    pub fn set_checkpoint_age(&mut self, seconds: f64) {
        self.registry
            .set(self.self_metrics.checkpoint_age, &[] as &[&str], seconds);
    }

    pub fn count_checkpoint_write(&mut self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.registry
            .inc(self.self_metrics.checkpoint_writes, &[result], 1.0);
    }

    pub fn count_otlp_export(&mut self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.registry
            .inc(self.self_metrics.otlp_exports, &[result], 1.0);
    }

    fn error(&mut self, stage: &'static str, reason: &'static str) {
        *self.errors.entry((stage, reason)).or_default() += 1;
    }

    /// Counts a record cut at the line limit, or not valid UTF-8 (it is still used).
    fn count_read_errors(&mut self, truncated: bool, invalid_utf8: bool) {
        if truncated {
            self.error("read", "line_truncated");
        }
        if invalid_utf8 {
            self.error("read", "invalid_utf8");
        }
    }

    /// What reader threads need to parse and match records for the selected rules.
    pub fn preparer(&self) -> Preparer {
        let group = self.group();
        Preparer {
            parser: group.parser.clone(),
            plan: group.rules.plan.clone(),
        }
    }

    /// Watches every record of the selected rules from now on for the mistakes [`Audit`]
    /// reports.
    pub fn start_audit(&mut self) {
        let group = self.group();
        self.audit = Some(Box::new(Audit::new(&group.parser, group.rules.rules.len())));
    }

    /// What the audit saw, if one was started.
    pub fn audit(&self) -> Option<&Audit> {
        self.audit.as_deref()
    }

    /// The selected rules' names, in the order of their rules file.
    pub fn rule_names(&self) -> &[String] {
        &self.group().rules.names
    }

    /// Processes one record's text.
    pub fn process(&mut self, text: &str) {
        // The scratch is taken out for the call, so the record can borrow it while the
        // rules mutate the rest of the pipeline.
        let mut scratch = std::mem::take(&mut self.scratch);
        let parser = &self.groups[self.active].parser;
        match parser.parse(text, &mut scratch) {
            Ok(()) => {
                let record = Record::new(text, &scratch);
                let time = parser.event_time(&record);
                let before = self
                    .audit
                    .is_some()
                    .then(|| self.group().rule_matches.clone());
                self.apply(record, time, None);
                if let (Some(audit), Some(before)) = (self.audit.as_mut(), before) {
                    let group = &self.groups[self.active];
                    let hits = group.rule_matches.iter().zip(&before).map(|(a, b)| a > b);
                    audit.parsed(&group.parser, &record, hits);
                }
            }
            Err(error) => {
                *self.errors.entry(("parse", error.reason())).or_default() += 1;
                if let Some(audit) = self.audit.as_mut() {
                    audit.unparsed(text, error.reason());
                }
            }
        }
        self.scratch = scratch;
    }

    /// Applies a parsed record to every rule of the selected group.
    fn apply(&mut self, record: Record<'_>, event_time: EventTime, mask: Option<u128>) {
        let group = &mut self.groups[self.active];
        let (registry, errors, audit) = (&mut self.registry, &mut self.errors, &mut self.audit);
        let matches = &mut group.rule_matches;
        group
            .rules
            .apply_simple(record, mask, registry, |index, result| match result {
                Ok(true) => matches[index] += 1,
                Ok(false) => {}
                Err(error) => {
                    *errors.entry(("rule", error.reason())).or_default() += 1;
                    if let Some(audit) = audit.as_mut() {
                        audit.rule_error(index, error.reason());
                    }
                }
            });
        for (rule_index, patterns) in group.rules.patterns_mut() {
            if patterns.apply(record, mask, registry) {
                group.rule_matches[rule_index] += 1;
            }
        }
        if !group.rules.has_pairs() {
            return;
        }
        let time = match event_time {
            EventTime::At(time) if time <= self.now_ns.saturating_add(MAX_FUTURE_SKEW_NS) => time,
            EventTime::At(_) => {
                // One line with a clock far ahead must not expire every open start.
                *errors.entry(("parse", "timestamp_in_future")).or_default() += 1;
                group.clock.newest_ns.unwrap_or(self.now_ns)
            }
            EventTime::Unreadable => {
                *errors.entry(("parse", "bad_timestamp")).or_default() += 1;
                group.clock.newest_ns.unwrap_or(self.now_ns)
            }
            EventTime::NotConfigured => self.now_ns,
        };
        let shortest = group.rules.pairs().map(|p| p.timeout_ns()).min();
        let newest = group.clock.advance(time, shortest, errors);
        // Expired on every record, not only when the clock moves: a start that arrives
        // out of order, already past its timeout, is unmatched at once.
        for pair in group.rules.pairs_mut() {
            pair.expire(newest, registry);
        }
        for (rule_index, rule) in group.rules.rules.iter_mut().enumerate() {
            let crate::rule::Rule::Pair(pair) = rule else {
                continue;
            };
            // Overflow is counted by `omen_agent_pair_overflow_total` at the end of the batch.
            if pair.apply(record, mask, time, registry) != PairOutcome::None {
                group.rule_matches[rule_index] += 1;
            }
        }
    }

    pub fn snapshot(&mut self) -> PipelineSnapshot {
        self.end_batch();
        let first = self.groups.first().map(|g| g.clock).unwrap_or_default();
        let rules = || self.groups.iter().map(|g| &g.rules);
        PipelineSnapshot {
            metrics: self.registry.snapshot(),
            pairs: rules()
                .flat_map(|r| r.pairs())
                .map(|p| (p.name().to_owned(), p.snapshot()))
                .collect(),
            newest_event_ns: first.newest_ns,
            last_event_ns: first.last_ns,
            patterns: rules()
                .flat_map(|r| r.patterns())
                .map(|p| (p.name().to_owned(), p.snapshot()))
                .collect(),
            clocks: self.groups.iter().map(|g| (g.key(), g.clock)).collect(),
        }
    }

    /// Restores saved state into the rules running now; state of metrics or pair rules
    /// whose definition changed since is dropped (and logged).
    pub fn restore(&mut self, snapshot: PipelineSnapshot) {
        for name in self.registry.restore(snapshot.metrics) {
            warn!(metric = %name, "checkpointed metric no longer defined the same way, starting it at zero");
        }
        let (mut pairs, mut patterns) = (snapshot.pairs, snapshot.patterns);
        let mut clocks = snapshot.clocks;
        for (index, group) in self.groups.iter_mut().enumerate() {
            for pair in group.rules.pairs_mut() {
                let restored = pairs
                    .remove(pair.name())
                    .is_some_and(|s| pair.restore(s, &mut self.registry));
                if !restored {
                    pair.resync_pending(&mut self.registry);
                }
            }
            for (_, rule) in group.rules.patterns_mut() {
                let restored = patterns
                    .remove(rule.name())
                    .is_some_and(|s| rule.restore(s));
                if !restored {
                    warn!(rule = %rule.name(), "no checkpointed templates for this patterns rule as defined now, learning afresh");
                }
            }
            // A checkpoint from before several rules files kept the one clock apart.
            let legacy = (index == 0).then_some(EventClock {
                newest_ns: snapshot.newest_event_ns,
                last_ns: snapshot.last_event_ns,
            });
            if let Some(clock) = clocks.remove(&group.key()).or(legacy) {
                group.clock = clock;
            }
        }
        self.end_batch();
    }

    /// Every patterns rule with its templates, for `/api/v1/patterns`.
    pub fn patterns(&self) -> impl Iterator<Item = &crate::rule::PatternsRule> {
        self.groups.iter().flat_map(|g| g.rules.patterns())
    }

    /// Renders the rules' metrics only (no self-metrics), as `omen agent test` prints them.
    pub fn render_rules(&self) -> String {
        self.registry
            .render(crate::registry::Format::Prometheus, |desc| {
                !desc.name.starts_with(SELF_METRIC_PREFIX)
            })
    }
}

impl RecordSink for Pipeline {
    fn stream(&mut self, name: &str) -> StreamId {
        if let Some(&id) = self.stream_ids.get(name) {
            return id;
        }
        let id = StreamId(self.streams.len());
        self.streams.push(StreamCounts {
            name: name.to_owned(),
            ..Default::default()
        });
        self.stream_ids.insert(name.to_owned(), id);
        id
    }

    fn record(&mut self, stream: StreamId, record: &[u8], truncated: bool) {
        if let Some(counts) = self.streams.get_mut(stream.0) {
            counts.records += 1;
        }
        let (text, invalid_utf8) = parse::decode(record);
        self.count_read_errors(truncated, invalid_utf8);
        self.process(&text);
    }

    fn parsed_batch(&mut self, stream: StreamId, batch: &ParsedBatch) {
        if let Some(counts) = self.streams.get_mut(stream.0) {
            counts.records += batch.len() as u64;
        }
        for record in batch.records() {
            self.count_read_errors(record.truncated, record.invalid_utf8);
            match record.parsed {
                Ok((fields, time)) => self.apply(fields, time, record.mask),
                Err(error) => self.error("parse", error.reason()),
            }
        }
    }

    fn bytes_read(&mut self, stream: StreamId, bytes: u64) {
        if let Some(counts) = self.streams.get_mut(stream.0) {
            counts.bytes += bytes;
        }
    }

    fn event(&mut self, stream: StreamId, what: SourceEvent) {
        let name = self
            .streams
            .get(stream.0)
            .map_or("", |s| s.name.as_str())
            .to_owned();
        self.registry.inc(
            self.self_metrics.source_events,
            &[name.as_str(), what.name()],
            1.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::registry::Value;

    fn pipeline(rules: &str) -> Pipeline {
        let config = RulesConfig::from_yaml(rules, Path::new("rules.yaml")).unwrap();
        Pipeline::new(
            &config,
            Path::new("rules.yaml"),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap()
    }

    fn value(p: &Pipeline, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match p.registry.get(name, labels) {
            Some(Value::Scalar(v)) => Some(*v),
            _ => None,
        }
    }

    const PAIR_RULES: &str = "parser: { format: logfmt, timestamp: { field: t, format: unix } }\nrules:\n  - name: job\n    type: pair\n    key: id\n    timeout: 10s\n    max_open: 3\n    start: { match: { msg: start } }\n    end: { match: { msg: end } }\n";

    #[test]
    fn cdc_deletes_need_the_json_parser() {
        let text =
            "parser: { format: logfmt }\nrules:\n  - name: deletes_total\n    type: cdc_deletes\n";
        let config = RulesConfig::from_yaml(text, Path::new("rules.yaml")).unwrap();
        let error = Pipeline::new(
            &config,
            Path::new("rules.yaml"),
            Arc::new(ManualClock::new(0)),
        )
        .err()
        .expect("refused");
        let message = error.to_string();
        assert!(
            message.contains("deletes_total") && message.contains("parser.format: json"),
            "{message}"
        );
    }

    #[test]
    fn bad_input_is_counted_never_fatal() {
        let mut p = pipeline("parser: { format: json, timestamp: { field: t } }\nlimits: { max_line_bytes: 64 }\nrules:\n  - name: bytes_total\n    type: counter\n    value: n\n  - name: seen\n    type: pair\n    key: k\n    timeout: 1s\n    start: { match: { e: a } }\n    end: { match: { e: b } }\n");
        let stream = p.stream("test");
        p.record(stream, br#"{"n": 5, "t": "2025-01-01T00:00:00Z"}"#, false);
        p.record(stream, b"{\"n\": \xff1}", false);
        p.record(stream, br#"{"n": "many"}"#, false);
        p.record(stream, br#"{"n": -1}"#, false);
        p.record(stream, br#"{"m": 1}"#, false);
        p.record(stream, br#"{"n": 1, "t": "yesterday"}"#, true);
        p.record(stream, b"[1, 2]", false);
        p.end_batch();
        assert_eq!(value(&p, "bytes_total", &[]), Some(6.0));
        let errors = |stage, reason| {
            value(
                &p,
                "omen_agent_errors_total",
                &[("stage", stage), ("reason", reason)],
            )
        };
        assert_eq!(errors("read", "invalid_utf8"), Some(1.0));
        assert_eq!(errors("read", "line_truncated"), Some(1.0));
        assert_eq!(errors("parse", "invalid_json"), Some(2.0));
        assert_eq!(errors("rule", "bad_value"), Some(1.0));
        assert_eq!(errors("rule", "negative_increment"), Some(1.0));
        assert_eq!(errors("rule", "missing_value"), Some(1.0));
        assert_eq!(errors("parse", "bad_timestamp"), Some(4.0));
        assert_eq!(
            value(&p, "omen_agent_lines_total", &[("stream", "test")]),
            Some(7.0)
        );
    }

    #[test]
    fn pairs_match_first_in_first_out_and_bound_their_state() {
        let mut p = pipeline(PAIR_RULES);
        for line in [
            "t=100 msg=start id=a",
            "t=101 msg=start id=a",
            "t=102 msg=start id=b",
            "t=103 msg=start id=c", // over max_open: dropped, counted
            "t=105 msg=end id=a",   // matches the start at 100
            "t=106 msg=end id=c",   // its start was dropped: orphan
        ] {
            p.process(line);
        }
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_orphan_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_pending", &[]), Some(2.0));
        assert_eq!(
            value(&p, "omen_agent_pair_overflow_total", &[("rule", "job")]),
            Some(1.0)
        );
        assert_eq!(
            value(&p, "omen_agent_pair_open_keys", &[("rule", "job")]),
            Some(2.0)
        );
        match p
            .registry
            .get("job_latency_seconds", &[] as &[(&str, &str)])
        {
            Some(Value::Histogram(h)) => assert_eq!((h.count, h.sum), (1, 5.0)),
            other => panic!("{other:?}"),
        }
        // Time passes in the logs: the start at 101 expires after 111, the one at 102 after 112.
        p.process("t=111.5 msg=noise");
        p.end_batch();
        assert_eq!(value(&p, "job_unmatched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_pending", &[]), Some(1.0));
    }

    #[test]
    fn one_line_stamped_far_ahead_expires_no_start_and_is_counted() {
        let mut p = pipeline(PAIR_RULES);
        for line in [
            "t=100 msg=start id=a",
            "t=101 msg=start id=b",
            "t=18101 msg=noise", // five hours ahead, alone
            "t=102 msg=end id=a",
            "t=103 msg=end id=b",
        ] {
            p.process(line);
        }
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(2.0));
        assert_eq!(value(&p, "job_unmatched_total", &[]), Some(0.0));
        let ahead = value(
            &p,
            "omen_agent_errors_total",
            &[("stage", "parse"), ("reason", "timestamp_ahead")],
        );
        assert_eq!(ahead, Some(1.0));
    }

    #[test]
    fn an_end_read_while_the_clock_lags_is_judged_by_its_own_time() {
        let mut p = pipeline(PAIR_RULES);
        for line in [
            "t=100 msg=start id=a",
            "t=101 msg=start id=a",
            // Late for the start at 100 (deadline 110), in time for the one at 101; the
            // clock is still at 101, but the start at 100 is unmatched all the same.
            "t=110.5 msg=end id=a",
        ] {
            p.process(line);
        }
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_unmatched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_orphan_total", &[]), Some(0.0));
        assert_eq!(value(&p, "job_pending", &[]), Some(0.0));
    }

    #[test]
    fn a_snapshot_restores_exactly_into_a_new_pipeline() {
        let mut p = pipeline(PAIR_RULES);
        for line in [
            "t=100 msg=start id=a",
            "t=101 msg=start id=b",
            "t=102 msg=end id=a",
        ] {
            p.process(line);
        }
        let snapshot = p.snapshot();
        let mut restored = pipeline(PAIR_RULES);
        restored.restore(snapshot.clone());
        assert_eq!(restored.snapshot(), snapshot);
        for q in [&mut p, &mut restored] {
            q.process("t=103 msg=end id=b");
            q.process("t=200 msg=start id=z");
        }
        assert_eq!(p.render_rules(), restored.render_rules());
        assert_eq!(value(&restored, "job_matched_total", &[]), Some(2.0));
    }

    #[test]
    fn reload_keeps_pair_state_when_unchanged_and_counts_failures() {
        let mut p = pipeline(PAIR_RULES);
        p.process("t=100 msg=start id=a");
        let path = Path::new("rules.yaml");
        let same = RulesConfig::from_yaml(
            &format!("{PAIR_RULES}  - name: other_total\n    type: counter\n"),
            path,
        )
        .unwrap();
        p.reload(GroupId(0), &same).unwrap();
        p.process("t=101 msg=end id=a");
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(1.0));
        let broken =
            RulesConfig::from_yaml("rules:\n  - name: 9bad\n    type: counter\n", path).unwrap();
        let error = p.reload(GroupId(0), &broken).unwrap_err().to_string();
        assert!(
            error.contains("rule `9bad`") && error.contains("field `name`"),
            "{error}"
        );
        assert_eq!(
            value(&p, "omen_agent_reloads_total", &[("result", "failure")]),
            Some(1.0)
        );
        assert_eq!(value(&p, "job_matched_total", &[]), Some(1.0));
    }

    const PATTERN_RULES: &str = "rules:\n  - { name: log_pattern, type: patterns, field: msg, level: level, static_labels: { source: app } }\n";

    #[test]
    fn patterns_count_lines_by_template_and_survive_a_snapshot_and_a_reload() {
        let lines = [
            "level=info msg=\"user 1 logged in\"",
            "level=info msg=\"user 2 logged in\"",
            "level=error msg=\"disk full on /var\"",
            "level=info msg=\"user 3 logged in\"",
        ];
        let mut p = pipeline(PATTERN_RULES);
        for line in &lines[..2] {
            p.process(line);
        }
        let saved = p.snapshot();
        let mut restored = pipeline(PATTERN_RULES);
        restored.restore(saved.clone());
        for q in [&mut p, &mut restored] {
            for line in &lines[2..] {
                q.process(line);
            }
            q.end_batch();
        }
        assert_eq!(p.render_rules(), restored.render_rules());
        let templates: Vec<(String, String, u64)> = p
            .patterns()
            .flat_map(|rule| rule.templates())
            .map(|t| (t.id.to_string(), t.text(), t.count))
            .collect();
        assert_eq!(templates.len(), 2, "{templates:?}");
        let (user, text, count) = &templates[0];
        assert_eq!((text.as_str(), *count), ("user <*> logged in", 3));
        let labels = [
            ("level", "info"),
            ("pattern", user.as_str()),
            ("source", "app"),
        ];
        assert_eq!(value(&p, "log_pattern_lines_total", &labels), Some(3.0));
        assert_eq!(
            value(&p, "log_pattern_new_total", &[("source", "app")]),
            Some(2.0)
        );
        // A reload that keeps the rule keeps its templates, so ids stay the same.
        let path = Path::new("rules.yaml");
        let same = RulesConfig::from_yaml(
            &format!("{PATTERN_RULES}  - {{ name: other_total, type: counter }}\n"),
            path,
        )
        .unwrap();
        p.reload(GroupId(0), &same).unwrap();
        p.process("level=info msg=\"user 4 logged in\"");
        p.end_batch();
        assert_eq!(value(&p, "log_pattern_lines_total", &labels), Some(4.0));
        assert_eq!(
            value(&p, "log_pattern_new_total", &[("source", "app")]),
            Some(2.0)
        );
    }

    #[test]
    fn a_patterns_rule_refuses_labels_it_sets_itself_and_bad_miner_settings() {
        for rule in [
            "{ name: p, type: patterns, labels: { pattern: msg } }",
            "{ name: p, type: patterns, static_labels: { level: x } }",
            "{ name: p, type: patterns, miner: { similarity: 0 } }",
        ] {
            let config =
                RulesConfig::from_yaml(&format!("rules:\n  - {rule}\n"), Path::new("r.yaml"))
                    .unwrap();
            let error = Pipeline::validate(&config, Path::new("r.yaml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("rule `p`"), "{error}");
        }
    }

    proptest::proptest! {
        /// Any bytes, through every parser and every rule kind: no panic, every record
        /// counted, every value finite.
        #[test]
        fn hostile_records_never_panic(
            records in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), 1..40),
            format in proptest::sample::select(vec!["logfmt", "json", "regex"]),
        ) {
            let rules = format!("parser: {{ format: {format}, pattern: '(?P<msg>\\w+) (?P<v>\\S+)', timestamp: {{ field: t, format: unix }}, multiline: {{ continuation: '^ ' }} }}\nlimits: {{ max_line_bytes: 50, max_series_per_metric: 3 }}\nrules:\n  - {{ name: c_total, type: counter, value: v, labels: {{ m: msg }} }}\n  - {{ name: g, type: gauge, value: v, op: add }}\n  - {{ name: h, type: histogram, value: v, buckets: [1, 10] }}\n  - {{ name: p, type: pair, key: k, timeout: 1s, max_open: 5, start: {{ match: {{ msg: a }} }}, end: {{ match: {{ msg: b }} }} }}\n  - {{ name: lp, type: patterns, level: v, miner: {{ max_clusters: 4 }} }}\n  - {{ name: lq, type: patterns, field: msg }}\n");
            let mut p = pipeline(&rules);
            let stream = p.stream("fuzz");
            for record in &records {
                p.record(stream, record, record.len() > 50);
            }
            p.end_batch();
            proptest::prop_assert_eq!(value(&p, "omen_agent_lines_total", &[("stream", "fuzz")]), Some(records.len() as f64));
            let samples = crate::oneshot::parse_exposition(&p.render_rules());
            proptest::prop_assert!(samples.values().all(|v| v.is_finite()), "{samples:?}");
        }
    }

    #[test]
    fn out_of_order_and_future_times_keep_the_pair_semantics() {
        // A start that arrives after the clock passed its deadline is unmatched at once;
        // its late end is an orphan, not a 100 s match.
        let mut p = pipeline(PAIR_RULES);
        for line in [
            "t=1000 msg=noise",
            "t=100 msg=start id=a",
            "t=200 msg=end id=a",
        ] {
            p.process(line);
        }
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(0.0));
        assert_eq!(value(&p, "job_unmatched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_orphan_total", &[]), Some(1.0));
        // A line from 2096 is counted as bad and does not move the pair clock.
        let mut q = pipeline(PAIR_RULES);
        for line in [
            "t=4000000000 msg=noise",
            "t=100 msg=start id=a",
            "t=105 msg=end id=a",
        ] {
            q.process(line);
        }
        q.end_batch();
        assert_eq!(value(&q, "job_matched_total", &[]), Some(1.0));
        let future = [("stage", "parse"), ("reason", "timestamp_in_future")];
        assert_eq!(value(&q, "omen_agent_errors_total", &future), Some(1.0));
    }

    #[test]
    fn sums_that_would_overflow_are_refused_and_checkpoints_stay_readable() {
        let mut p = pipeline("rules:\n  - { name: x_total, type: counter, value: v }\n");
        p.process("v=1e308");
        p.process("v=1e308");
        p.end_batch();
        assert_eq!(value(&p, "x_total", &[]), Some(1e308));
        let refused = [("stage", "rule"), ("reason", "non_finite_result")];
        assert_eq!(value(&p, "omen_agent_errors_total", &refused), Some(1.0));
        let json = serde_json::to_vec(&p.snapshot()).unwrap();
        let back: PipelineSnapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, p.snapshot());
    }

    #[test]
    fn a_logged_overflow_value_shares_the_overflow_series() {
        let mut p = pipeline("limits: { max_series_per_metric: 1 }\nrules:\n  - { name: u_total, type: counter, labels: { user: user } }\n");
        p.process("user=__overflow__");
        p.process("user=b");
        let text = p.render_rules();
        assert_eq!(
            text.matches("u_total{user=\"__overflow__\"}").count(),
            1,
            "{text}"
        );
        assert_eq!(value(&p, "u_total", &[("user", "__overflow__")]), Some(2.0));
    }

    #[test]
    fn pending_over_the_label_budget_survives_a_restore() {
        let rules = "parser: { timestamp: { field: t, format: unix } }\nlimits: { max_series_per_metric: 1 }\nrules:\n  - { name: p, type: pair, key: id, timeout: 1h, labels: { k: k }, start: { match: { m: s } }, end: { match: { m: e } } }\n";
        let mut p = pipeline(rules);
        for line in ["t=1 m=s id=1 k=a", "t=2 m=s id=2 k=b", "t=3 m=s id=3 k=c"] {
            p.process(line);
        }
        p.end_batch();
        let before = p.render_rules();
        let mut q = pipeline(rules);
        q.restore(p.snapshot());
        assert_eq!(q.render_rules(), before);
        assert_eq!(value(&q, "p_pending", &[("k", "__overflow__")]), Some(2.0));
    }

    #[test]
    fn the_cardinality_budget_is_enforced_and_counted() {
        let mut p = pipeline("limits: { max_series_per_metric: 2 }\nrules:\n  - name: users_total\n    type: counter\n    labels: { user: user }\n");
        for user in ["a", "b", "c", "d", "a"] {
            p.process(&format!("user={user}"));
        }
        p.end_batch();
        assert_eq!(value(&p, "users_total", &[("user", "a")]), Some(2.0));
        assert_eq!(
            value(&p, "users_total", &[("user", "__overflow__")]),
            Some(2.0)
        );
        assert_eq!(
            value(
                &p,
                "omen_agent_series_dropped_total",
                &[("metric", "users_total")]
            ),
            Some(2.0)
        );
    }

    const JSON_PAIR_RULES: &str = "parser: { format: json, timestamp: { field: t, format: unix } }\nrules:\n  - name: other\n    type: pair\n    key: id\n    timeout: 10s\n    start: { match: { msg: start } }\n    end: { match: { msg: end } }\n";

    fn rules(text: &str) -> RulesConfig {
        RulesConfig::from_yaml(text, Path::new("rules.yaml")).unwrap()
    }

    #[test]
    fn each_rules_file_parses_its_own_records_and_keeps_its_own_clock() {
        let clock = Arc::new(ManualClock::new(0));
        let mut p = Pipeline::new(&rules(PAIR_RULES), Path::new("a.yaml"), clock.clone()).unwrap();
        let b = p
            .add_rules(&rules(JSON_PAIR_RULES), Path::new("b.yaml"))
            .unwrap();
        assert_eq!(b, GroupId(1));
        // The same file twice is one group.
        let again = p.add_rules(&rules(JSON_PAIR_RULES), Path::new("b.yaml"));
        assert_eq!(again.unwrap(), b);

        p.process("t=100 msg=start id=a");
        p.select(b);
        // Far ahead on b's clock, twice (a jump confirmed): a's start must not expire.
        p.process(r#"{"t": 5000, "msg": "start", "id": "x"}"#);
        p.process(r#"{"t": 5001, "msg": "start", "id": "y"}"#);
        p.process("t=101 msg=start id=z");
        p.select(GroupId(0));
        p.process("t=105 msg=end id=a");
        p.end_batch();
        assert_eq!(value(&p, "job_matched_total", &[]), Some(1.0));
        assert_eq!(value(&p, "job_unmatched_total", &[]), Some(0.0));
        assert_eq!(value(&p, "other_pending", &[]), Some(2.0));
        let unparsed = [("stage", "parse"), ("reason", "invalid_json")];
        assert_eq!(value(&p, "omen_agent_errors_total", &unparsed), Some(1.0));
        assert_eq!(
            p.rules_paths().collect::<Vec<_>>(),
            [Path::new("a.yaml"), Path::new("b.yaml")]
        );

        // A third file defining a metric another defines is refused, naming that file.
        let error = p.add_rules(&rules(PAIR_RULES), Path::new("c.yaml"));
        let message = error.unwrap_err().to_string();
        assert!(
            message.contains("a.yaml") && message.contains("job"),
            "{message}"
        );

        // A restart resumes each file's clock and open starts.
        let snapshot = p.snapshot();
        assert_eq!(snapshot.clocks.len(), 2);
        let mut q = Pipeline::new(&rules(PAIR_RULES), Path::new("a.yaml"), clock).unwrap();
        let b = q
            .add_rules(&rules(JSON_PAIR_RULES), Path::new("b.yaml"))
            .unwrap();
        q.restore(snapshot);
        q.select(b);
        q.process(r#"{"t": 5002, "msg": "end", "id": "x"}"#);
        q.select(GroupId(0));
        q.process("t=106 msg=start id=c");
        q.process("t=107 msg=end id=c");
        q.end_batch();
        assert_eq!(value(&q, "other_matched_total", &[]), Some(1.0));
        assert_eq!(value(&q, "job_matched_total", &[]), Some(2.0));

        // Reloading one file leaves the other's series alone; its removed rules go.
        let counter = "parser: { format: json }\nrules: [{ name: lines_total, type: counter }]\n";
        q.reload(b, &rules(counter)).unwrap();
        q.select(b);
        q.process(r#"{"msg": "hello"}"#);
        q.end_batch();
        assert_eq!(value(&q, "lines_total", &[]), Some(1.0));
        assert_eq!(value(&q, "job_matched_total", &[]), Some(2.0));
        assert_eq!(value(&q, "other_matched_total", &[]), None);
        // A reload may not take a metric of the other file either.
        let taken = "rules: [{ name: job_matched_total, type: counter }]\n";
        assert!(q.reload(b, &rules(taken)).is_err());
        assert_eq!(value(&q, "lines_total", &[]), Some(1.0));
    }
}
