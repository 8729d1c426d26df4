//! Structure-aware mutation of JSON documents, for tests that feed hostile variants of a
//! valid input (a configuration, a snapshot, a checkpoint) to code that must refuse them
//! with an error, never a panic.
//!
//! Random bytes are refused by the first parser they meet, so they never reach what
//! restores state or checks settings. A valid document with a few leaves changed to
//! hostile values (zero, negative, huge, empty, a wrong type, a shortened array, a missing
//! or unknown key) gets through the parser and exercises the checks behind it. Mutations
//! are drawn from a seed, so a failing case is reproduced by its seed alone.

use serde_json::{Map, Number, Value};

/// A small deterministic generator (xorshift64*), so that a seed names a case.
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True once in `n` draws.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// How many cases a hostile-input test runs: `OMEN_FUZZ_CASES`, or 300.
pub fn cases() -> u64 {
    std::env::var("OMEN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// Runs `case` for seeds `0..cases()`; `case` says whether its input was taken (rather
/// than refused). Names the seed of a case that panics, and fails unless some inputs were
/// taken and some refused: mutations that are all refused test only the parser.
///
/// # Panics
/// On a case that panics, or when every input was taken or every one refused.
pub fn for_each_seed(what: &str, mut case: impl FnMut(u64) -> bool) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let (mut taken, total) = (0, cases());
    for seed in 0..total {
        match catch_unwind(AssertUnwindSafe(|| case(seed))) {
            Ok(was_taken) => taken += u64::from(was_taken),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{what}, seed {seed}: panicked: {message}");
            }
        }
    }
    assert!(
        taken > 0 && taken < total,
        "{what}: {taken} of {total} taken"
    );
}

/// Numbers that break arithmetic written for sane ones.
const HOSTILE_NUMBERS: [f64; 12] = [
    0.0,
    -1.0,
    1.0,
    0.5,
    -0.5,
    1e-300,
    1e300,
    -1e300,
    4_294_967_296.0,
    9_007_199_254_740_993.0,
    1.8e19,
    -9.2e18,
];

/// Returns `document` with about `changes` of its nodes mutated.
pub fn mutate(document: &Value, seed: u64, changes: usize) -> Value {
    let mut random = Seeded::new(seed);
    let nodes = count_nodes(document).max(1) as u64;
    let mut mutated = document.clone();
    for _ in 0..changes.max(1) {
        let target = random.below(nodes);
        let mut index = 0;
        mutate_nth(&mut mutated, target, &mut index, &mut random);
    }
    mutated
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Mutates the `target`th node in a depth-first walk; `index` counts the nodes passed.
fn mutate_nth(value: &mut Value, target: u64, index: &mut u64, random: &mut Seeded) -> bool {
    if *index == target {
        mutate_node(value, random);
        return true;
    }
    *index += 1;
    match value {
        Value::Array(items) => items
            .iter_mut()
            .any(|item| mutate_nth(item, target, index, random)),
        Value::Object(map) => map
            .values_mut()
            .any(|item| mutate_nth(item, target, index, random)),
        _ => false,
    }
}

fn mutate_node(value: &mut Value, random: &mut Seeded) {
    // Now and then any node becomes a value of another type.
    if random.one_in(8) {
        *value = hostile_scalar(random);
        return;
    }
    match value {
        Value::Number(_) => *value = hostile_number(random),
        Value::String(text) => *text = hostile_text(text, random),
        Value::Bool(flag) => *flag = !*flag,
        Value::Null => *value = hostile_scalar(random),
        Value::Array(items) => mutate_array(items, random),
        Value::Object(map) => mutate_object(map, random),
    }
}

fn hostile_number(random: &mut Seeded) -> Value {
    let pick = HOSTILE_NUMBERS[random.below(HOSTILE_NUMBERS.len() as u64) as usize];
    let integer = pick.fract() == 0.0 && pick.abs() < 9.2e18 && random.one_in(2);
    if integer {
        Value::from(pick as i64)
    } else if pick >= 1.8e19 {
        Value::from(u64::MAX)
    } else {
        Number::from_f64(pick).map_or(Value::Null, Value::Number)
    }
}

fn hostile_text(text: &str, random: &mut Seeded) -> String {
    match random.below(7) {
        0 => String::new(),
        1 => text.repeat(1 + random.below(64) as usize),
        2 => format!("{text}\u{0}\u{fffd}\u{202e}"),
        3 => "-1".to_owned(),
        4 => "1e309".to_owned(),
        5 => text.chars().rev().collect(),
        _ => {
            // A prefix, cut on a character boundary.
            let cut = random.below(text.len() as u64 + 1) as usize;
            let cut = (0..=cut)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[..cut].to_owned()
        }
    }
}

fn hostile_scalar(random: &mut Seeded) -> Value {
    match random.below(5) {
        0 => Value::Null,
        1 => Value::Bool(random.one_in(2)),
        2 => hostile_number(random),
        3 => Value::String(hostile_text("x", random)),
        _ => Value::Array(Vec::new()),
    }
}

fn mutate_array(items: &mut Vec<Value>, random: &mut Seeded) {
    match random.below(4) {
        0 => items.clear(),
        1 if !items.is_empty() => {
            let at = random.below(items.len() as u64) as usize;
            items.remove(at);
        }
        2 if !items.is_empty() => {
            let at = random.below(items.len() as u64) as usize;
            let copy = items[at].clone();
            items.insert(at, copy);
        }
        _ => items.push(hostile_scalar(random)),
    }
}

fn mutate_object(map: &mut Map<String, Value>, random: &mut Seeded) {
    if !map.is_empty() && random.one_in(2) {
        let at = random.below(map.len() as u64) as usize;
        if let Some(key) = map.keys().nth(at).cloned() {
            map.remove(&key);
        }
    } else {
        map.insert("unknown_key".to_owned(), hostile_scalar(random));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_mutation_and_changes_something() {
        let document = serde_json::json!({
            "window": 60, "name": "checkout", "levels": [1.0, 2.5, 3.0],
            "nested": { "enabled": true, "ratio": 0.25 }
        });
        let mut changed = 0;
        for seed in 0..200 {
            let once = mutate(&document, seed, 2);
            assert_eq!(once, mutate(&document, seed, 2), "seed {seed}");
            changed += usize::from(once != document);
        }
        assert!(changed > 190, "{changed} of 200 changed");
    }

    #[test]
    fn every_node_is_reached() {
        let document = serde_json::json!({ "a": [1, { "b": "c" }], "d": null });
        for target in 0..count_nodes(&document) as u64 {
            let mut copy = document.clone();
            let (mut index, mut random) = (0, Seeded::new(target));
            assert!(mutate_nth(&mut copy, target, &mut index, &mut random));
        }
    }
}
