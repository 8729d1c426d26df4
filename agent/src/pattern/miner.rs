//! An online template miner in the manner of Drain (He, Zhu, Zheng and Lyu, ICWS 2017):
//! each message is cut into tokens, tokens that hold a variable are masked
//! ([`super::token`]), and the message joins the most similar template among those of the
//! same token count and the same first `depth` tokens, if at least `similarity` of the
//! positions agree; positions that disagree become wildcards. Otherwise it starts a
//! template of its own. A message is assigned its template when it arrives, and never
//! moved: what a template's id counted stays counted.
//!
//! Bounded: at most `max_clusters` templates; beyond that the least recently used is
//! evicted (counted). A template's id is a hash of the message that started it, so the
//! same log gives the same ids in every run.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::token::{tokenize, Tokens};

/// Settings of a [`TemplateMiner`]; one set for every log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Share of positions that must agree (a wildcard agrees only with a masked token)
    /// for a message to join a template.
    pub similarity: f64,
    /// Leading tokens that must be equal (masked tokens equal each other) for a message to
    /// be compared with a template at all.
    pub depth: usize,
    /// Templates kept at most; the least recently used goes first.
    pub max_clusters: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity: 0.75,
            depth: 2,
            max_clusters: 10_000,
        }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MinerConfigError {
    #[error("similarity must be in (0, 1], got {0}")]
    Similarity(f64),
    #[error("max_clusters must be at least 1")]
    NoClusters,
}

impl MinerConfig {
    /// Whether every setting is in its range.
    pub fn check(&self) -> Result<(), MinerConfigError> {
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            return Err(MinerConfigError::Similarity(self.similarity));
        }
        if self.max_clusters == 0 {
            return Err(MinerConfigError::NoClusters);
        }
        Ok(())
    }
}

/// A template's id: 8 hex digits, stable for a given log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PatternId(pub u32);

impl PatternId {
    /// The id's 8 hex digits, written without allocating (a label value on every line).
    pub fn hex(self) -> PatternHex {
        let mut digits = [0u8; 8];
        for (i, digit) in digits.iter_mut().enumerate() {
            let nibble = (self.0 >> (28 - 4 * i)) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        PatternHex(digits)
    }
}

/// A [`PatternId`] as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternHex([u8; 8]);

impl PatternHex {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Display for PatternId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

/// What [`TemplateMiner::add`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub id: PatternId,
    /// The message started a template.
    pub new: bool,
}

/// One template: fixed tokens and wildcards, with the text between them as the message
/// that started it had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: PatternId,
    /// `None` is a wildcard.
    tokens: Vec<Option<Box<str>>>,
    /// The text before the first token, between tokens, and after the last (one more
    /// than the tokens).
    glue: Vec<Box<str>>,
    /// Messages assigned to it.
    pub count: u64,
    /// The miner's clock when a message last joined it.
    last_used: u64,
    /// Its key in the miner's index (token count and leading tokens).
    key: u64,
}

impl Template {
    /// The template's text, variables written `<*>`.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (token, glue) in self.tokens.iter().zip(&self.glue) {
            text.push_str(glue);
            text.push_str(token.as_deref().unwrap_or("<*>"));
        }
        if let Some(last) = self.glue.last() {
            text.push_str(last);
        }
        text
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.tokens.iter().flatten().map(|t| t.len()).sum::<usize>()
            + self.glue.iter().map(|g| g.len()).sum::<usize>();
        strings
            + self.tokens.capacity() * std::mem::size_of::<Option<Box<str>>>()
            + self.glue.capacity() * std::mem::size_of::<Box<str>>()
    }

    /// Positions of `tokens` that agree with this template, wildcards agreeing only with
    /// masked tokens; `None` when fewer than `needed` can.
    fn agreement(&self, message: &str, tokens: &Tokens, needed: usize) -> Option<usize> {
        let mut agree = 0;
        let mut left = tokens.len();
        for (template, token) in self.tokens.iter().zip(tokens.iter()) {
            let same = match (template, token.masked) {
                (None, masked) => masked,
                (Some(_), true) => false,
                (Some(fixed), false) => **fixed == message[token.range.clone()],
            };
            agree += usize::from(same);
            left -= 1;
            if agree + left < needed {
                return None;
            }
        }
        (agree >= needed).then_some(agree)
    }

    /// Takes a message in: the positions where it differs become wildcards.
    fn absorb(&mut self, message: &str, tokens: &Tokens) {
        for (template, token) in self.tokens.iter_mut().zip(tokens.iter()) {
            let differs = match template {
                None => false,
                Some(fixed) => token.masked || **fixed != message[token.range.clone()],
            };
            if differs {
                *template = None;
            }
        }
    }
}

/// The online miner. Serialisable: its state is its snapshot, and ids survive a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateMiner {
    config: MinerConfig,
    /// Templates by slot; an evicted template leaves its slot empty for the next.
    slots: Vec<Option<Template>>,
    /// Slots by key (token count and leading tokens).
    #[serde(skip)]
    index: HashMap<u64, Vec<u32>>,
    /// Slots by id.
    #[serde(skip)]
    by_id: HashMap<PatternId, u32>,
    clock: u64,
    evicted: u64,
    #[serde(skip)]
    tokens: Tokens,
}

impl TemplateMiner {
    /// A miner with checked settings.
    pub fn new(config: MinerConfig) -> Result<Self, MinerConfigError> {
        config.check()?;
        Ok(Self {
            config,
            slots: Vec::new(),
            index: HashMap::new(),
            by_id: HashMap::new(),
            clock: 0,
            evicted: 0,
            tokens: Tokens::default(),
        })
    }

    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Assigns `message` to a template, starting one if none is similar enough.
    pub fn add(&mut self, message: &str) -> Assignment {
        self.clock = self.clock.saturating_add(1);
        let mut tokens = std::mem::take(&mut self.tokens);
        tokenize(message, &mut tokens);
        let key = tokens.key(message, self.config.depth);
        // At least one position must agree, whatever the similarity (none, for a message
        // without tokens: all such messages are one template).
        let needed = (self.config.similarity * tokens.len() as f64).ceil() as usize;
        let needed = needed.max(usize::from(!tokens.is_empty()));
        let best = self.index.get(&key).and_then(|slots| {
            let mut best: Option<(usize, u32)> = None;
            for &slot in slots {
                let Some(template) = &self.slots[slot as usize] else {
                    continue;
                };
                let floor = best.map_or(needed, |(agree, _)| agree + 1);
                if let Some(agree) = template.agreement(message, &tokens, floor) {
                    best = Some((agree, slot));
                }
            }
            best
        });
        let assignment = match best {
            Some((_, slot)) => {
                let template = self.slots[slot as usize]
                    .as_mut()
                    .expect("indexed slots hold a template");
                template.absorb(message, &tokens);
                template.count = template.count.saturating_add(1);
                template.last_used = self.clock;
                Assignment {
                    id: template.id,
                    new: false,
                }
            }
            None => Assignment {
                id: self.start(message, &tokens, key),
                new: true,
            },
        };
        self.tokens = tokens;
        assignment
    }

    /// Starts a template from `message`, evicting the least recently used if full.
    fn start(&mut self, message: &str, tokens: &Tokens, key: u64) -> PatternId {
        if self.by_id.len() >= self.config.max_clusters {
            self.evict_least_recent();
        }
        let mut id = PatternId(tokens.fingerprint(message) as u32);
        while self.by_id.contains_key(&id) {
            id = PatternId(id.0.wrapping_add(0x9e37_79b9));
        }
        let template = Template {
            id,
            tokens: tokens
                .iter()
                .map(|t| (!t.masked).then(|| message[t.range.clone()].into()))
                .collect(),
            glue: tokens.glue(message).map(Into::into).collect(),
            count: 1,
            last_used: self.clock,
            key,
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(template);
                free as u32
            }
            None => {
                self.slots.push(Some(template));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.entry(key).or_default().push(slot);
        self.by_id.insert(id, slot);
        id
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, t)| t.as_ref().map(|t| (t.last_used, slot)))
            .min();
        let Some((_, slot)) = oldest else { return };
        if let Some(template) = self.slots[slot].take() {
            self.by_id.remove(&template.id);
            if let Some(slots) = self.index.get_mut(&template.key) {
                slots.retain(|&s| s as usize != slot);
            }
            self.evicted = self.evicted.saturating_add(1);
        }
    }

    /// Rebuilds the lookups a snapshot does not keep.
    pub fn restored(mut self) -> Self {
        self.index.clear();
        self.by_id.clear();
        for (slot, template) in self.slots.iter().enumerate() {
            if let Some(template) = template {
                self.index
                    .entry(template.key)
                    .or_default()
                    .push(slot as u32);
                self.by_id.insert(template.id, slot as u32);
            }
        }
        self
    }

    /// The template with this id, if still kept.
    pub fn template(&self, id: PatternId) -> Option<&Template> {
        let slot = *self.by_id.get(&id)?;
        self.slots[slot as usize].as_ref()
    }

    /// Every template kept, in the order they started (a reused slot aside).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.slots.iter().flatten()
    }

    /// Templates evicted to stay within `max_clusters`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes held on the heap by the templates and the lookups.
    pub fn heap_bytes(&self) -> usize {
        let templates: usize = self.templates().map(Template::heap_bytes).sum();
        let per_entry = std::mem::size_of::<(u64, Vec<u32>)>() + 4 + 8;
        templates
            + self.slots.capacity() * std::mem::size_of::<Option<Template>>()
            + self.by_id.len() * (per_entry + std::mem::size_of::<(PatternId, u32)>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(MinerConfig::default()).unwrap()
    }

    #[test]
    fn variables_join_one_template_and_words_that_differ_make_wildcards() {
        let mut miner = miner();
        let a = miner.add("Failed password for invalid user admin from 10.0.0.1 port 22 ssh2");
        let b = miner.add("Failed password for invalid user oracle from 10.0.0.9 port 4122 ssh2");
        assert!(a.new && !b.new);
        assert_eq!(a.id, b.id);
        // `ssh2` holds a digit: masked like every such token, in every message alike.
        assert_eq!(
            miner.template(a.id).unwrap().text(),
            "Failed password for invalid user <*> from <*> port <*> <*>"
        );
        assert_eq!(miner.template(a.id).unwrap().count, 2);
    }

    #[test]
    fn messages_that_differ_in_too_many_words_or_in_length_stay_apart() {
        let mut miner = miner();
        let a = miner.add("Starting TrustedInstaller initialization.");
        let b = miner.add("Ending TrustedInstaller finalization.");
        let c = miner.add("Starting TrustedInstaller initialization. now");
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(miner.templates().count(), 3);
    }

    #[test]
    fn the_text_between_tokens_is_kept() {
        let mut miner = miner();
        let id = miner.add("lock=233, flags=0x1, tag=\"View Lock\"").id;
        miner.add("lock=989, flags=0x0, tag=\"View Lock\"");
        assert_eq!(
            miner.template(id).unwrap().text(),
            "lock=<*>, flags=<*>, tag=\"View Lock\""
        );
    }

    #[test]
    fn ids_are_the_same_in_every_run_and_survive_a_snapshot() {
        let lines = ["a b 1", "a b 2", "c d e", "a x 3"];
        let mut first = miner();
        let ids: Vec<PatternId> = lines.iter().map(|l| first.add(l).id).collect();
        let mut second = miner();
        let again: Vec<PatternId> = lines.iter().map(|l| second.add(l).id).collect();
        assert_eq!(ids, again);
        let json = serde_json::to_string(&first).unwrap();
        let mut restored = serde_json::from_str::<TemplateMiner>(&json)
            .unwrap()
            .restored();
        assert_eq!(restored.add("a b 77").id, ids[0]);
        assert_eq!(restored.add("c d e").id, ids[2]);
    }

    #[test]
    fn the_least_recently_used_template_is_evicted_and_counted() {
        let mut miner = TemplateMiner::new(MinerConfig {
            max_clusters: 2,
            ..MinerConfig::default()
        })
        .unwrap();
        let a = miner.add("alpha beta gamma").id;
        let b = miner.add("delta epsilon zeta").id;
        miner.add("alpha beta gamma");
        let c = miner.add("eta theta iota").id;
        assert_eq!(miner.evicted(), 1);
        assert!(miner.template(a).is_some());
        assert!(miner.template(b).is_none());
        assert!(miner.template(c).is_some());
        assert_eq!(miner.templates().count(), 2);
    }

    #[test]
    fn empty_and_odd_messages_get_a_template_too() {
        let mut miner = miner();
        let empty = miner.add("");
        assert_eq!(miner.add("   ").id, empty.id);
        let odd = miner.add("\u{0}\u{1}=,,==");
        assert_ne!(odd.id, empty.id);
        assert!(miner.template(empty.id).is_some());
    }

    #[test]
    fn ids_are_eight_hex_digits() {
        assert_eq!(PatternId(0x00ab_cdef).to_string(), "00abcdef");
        assert_eq!(PatternId(u32::MAX).hex().as_str(), "ffffffff");
        assert_eq!(
            format!("{}", PatternId(0x1234_5678)),
            format!("{:08x}", 0x1234_5678)
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for similarity in [0.0, -1.0, 1.5, f64::NAN] {
            let config = MinerConfig {
                similarity,
                ..MinerConfig::default()
            };
            assert!(TemplateMiner::new(config).is_err());
        }
        let config = MinerConfig {
            max_clusters: 0,
            ..MinerConfig::default()
        };
        assert_eq!(
            TemplateMiner::new(config).unwrap_err(),
            MinerConfigError::NoClusters
        );
    }
}
