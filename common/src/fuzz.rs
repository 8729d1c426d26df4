//! Byte-level fuzzing that runs as an ordinary test: every parser that reads bytes from
//! outside (a request body, a log line, a file on disk, a Kafka record) gets a test that
//! feeds it thousands of hostile inputs and fails on the first panic, with that input
//! shrunk to a small one.
//!
//! Inputs come from [proptest]'s runner and shrinking. Most are a valid input of the
//! parser (its corpus) with a few byte-level edits: bits flipped, bytes set to ones
//! parsers trip on, ranges deleted, repeated or spliced from another valid input, tokens
//! of the common formats (`"`, `\`, `{`, a lone UTF-8 lead byte, an overlong varint, a
//! number past `u64`) inserted. Edited valid inputs reach far past the first check;
//! purely random bytes, one input in eight, do not, but cost nothing.
//!
//! A run is deterministic, so a failure in CI is a failure on every machine:
//! `OMEN_FUZZ_CASES` sets how many inputs each target gets (300 by default) and
//! `OMEN_FUZZ_SEED` (a number) draws another set, for longer runs
//! (`bench/fuzz.sh`). cargo-fuzz would need a nightly toolchain and libFuzzer; this needs
//! neither and runs in `cargo test`.
//!
//! Each target says, per input, whether it was taken (parsed, restored, counted) or
//! refused with an error; a target whose inputs are all refused tests only the first
//! check, and fails.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// Bytes parsers trip on: quotes, escapes, brackets, separators, a NUL, bytes that are not
/// UTF-8 or start a sequence they do not finish, numbers past every integer type and past
/// `f64`, an overlong protobuf varint and a length that runs past the end.
const TOKENS: [&[u8]; 32] = [
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"=",
    b"\n",
    b"\r\n",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"-1",
    b"0",
    b"1e309",
    b"NaN",
    b"-Inf",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\\ud800",
    b"\\u0000",
    b"null",
    b"true",
    b"# ",
    b"%",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x0a\xff\xff\xff\x0f",
    b"\x80",
];

/// One byte-level edit; positions are drawn as [`Index`]es, resolved against the input's
/// length when the edit is applied.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, u8),
    Repeat(Index, u8, u8),
    Truncate(Index),
    Splice(Index, Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::SetByte(at, byte)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Edit::InsertToken(at, token)),
        1 => (any::<Index>(), 1u8..64).prop_map(|(at, len)| Edit::Delete(at, len)),
        1 => (any::<Index>(), 1u8..64, 2u8..64)
            .prop_map(|(at, len, times)| Edit::Repeat(at, len, times)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(other, from, at)| Edit::Splice(other, from, at)),
    ]
}

/// Where `at` falls in `0..=len`.
fn place(at: &Index, len: usize) -> usize {
    at.index(len + 1)
}

fn apply(input: &mut Vec<u8>, edit: &Edit, corpus: &[Vec<u8>]) {
    let len = input.len();
    match edit {
        Edit::FlipBit(at, bit) if len > 0 => input[at.index(len)] ^= 1 << bit,
        Edit::SetByte(at, byte) if len > 0 => input[at.index(len)] = *byte,
        Edit::FlipBit(..) | Edit::SetByte(..) => {}
        Edit::Insert(at, bytes) => {
            let at = place(at, len);
            input.splice(at..at, bytes.iter().copied());
        }
        Edit::InsertToken(at, token) => {
            let at = place(at, len);
            let token = TOKENS[token.index(TOKENS.len())];
            input.splice(at..at, token.iter().copied());
        }
        Edit::Delete(at, n) => {
            let at = place(at, len);
            input.drain(at..(at + usize::from(*n)).min(len));
        }
        Edit::Repeat(at, n, times) => {
            let at = place(at, len);
            let chunk = input[at..(at + usize::from(*n)).min(len)].to_vec();
            for _ in 1..*times {
                input.splice(at..at, chunk.iter().copied());
            }
        }
        Edit::Truncate(at) => input.truncate(place(at, len)),
        Edit::Splice(other, from, at) => {
            let other = &corpus[other.index(corpus.len())];
            let from = place(from, other.len());
            let at = place(at, len);
            input.splice(at.., other[from..].iter().copied());
        }
    }
}

/// Inputs for a parser whose valid inputs are `corpus` (not empty): mostly edited
/// corpus entries, now and then random bytes.
pub fn hostile_bytes(corpus: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    assert!(!corpus.is_empty(), "a fuzz corpus needs a valid input");
    let corpus = Arc::new(corpus);
    // Mostly one edit: most edits break a text format, and an input with one broken
    // place gets further than one with many.
    let edits = prop_oneof![
        4 => proptest::collection::vec(edit(), 1..2),
        2 => proptest::collection::vec(edit(), 2..4),
        1 => proptest::collection::vec(edit(), 4..12),
    ];
    let edited = (any::<Index>(), edits).prop_map(move |(pick, edits)| {
        let mut input = corpus[pick.index(corpus.len())].clone();
        for edit in &edits {
            apply(&mut input, edit, &corpus);
        }
        input
    });
    prop_oneof![
        7 => edited,
        1 => proptest::collection::vec(any::<u8>(), 0..1024),
    ]
    .boxed()
}

/// How many inputs each target gets: `OMEN_FUZZ_CASES`, or 300.
pub fn cases() -> u32 {
    std::env::var("OMEN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// The seed of the inputs drawn: `OMEN_FUZZ_SEED`, or 0.
fn seed() -> u64 {
    std::env::var("OMEN_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Feeds `target` [`cases`] inputs drawn from `corpus`; `target` says whether it took an
/// input (rather than refused it with an error).
///
/// # Panics
/// On an input that makes `target` panic, naming that input shrunk; and when every input
/// was refused, which means the inputs do not reach past the first check.
pub fn fuzz(what: &str, corpus: Vec<Vec<u8>>, target: impl FnMut(&[u8]) -> bool) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed().to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let (taken, total) = (Cell::new(0u32), Cell::new(0u32));
    // The runner takes a `Fn`; a target keeps state across inputs (a clock, a queue).
    // A panic drops the borrow as it unwinds.
    let target = RefCell::new(target);
    let outcome = runner.run(&hostile_bytes(corpus), |input| {
        total.set(total.get() + 1);
        taken.set(taken.get() + u32::from((target.borrow_mut())(&input)));
        Ok(())
    });
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!(
            "{what}: {reason}\nshrunk input ({} bytes): {:?}\nbytes: {input:?}\n(OMEN_FUZZ_SEED={})",
            input.len(),
            String::from_utf8_lossy(&input),
            seed()
        ),
        Err(error) => panic!("{what}: {error}"),
    }
    let (taken, total) = (taken.get(), total.get());
    eprintln!("fuzz {what}: {total} inputs, {taken} taken, no panic");
    assert!(taken > 0, "{what}: none of {total} inputs taken");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_and_change_the_input() {
        let corpus = vec![b"{\"a\": [1, 2]}".to_vec(), Vec::new(), b"x".to_vec()];
        let mut runner = TestRunner::deterministic();
        let strategy = hostile_bytes(corpus.clone());
        let mut changed = 0;
        for _ in 0..2000 {
            let input = strategy.new_tree(&mut runner).expect("a value").current();
            changed += usize::from(!corpus.contains(&input));
        }
        assert!(changed > 1500, "{changed} of 2000 changed");
    }

    #[test]
    fn a_panicking_target_is_reported_with_its_input() {
        let failure = std::panic::catch_unwind(|| {
            fuzz("finds a quote", vec![b"abc".to_vec()], |input| {
                assert!(!input.contains(&b'"'), "a quote");
                input.len() > 3
            })
        })
        .expect_err("a quote is found");
        let message = failure.downcast_ref::<String>().expect("a message");
        assert!(
            message.contains("shrunk input") && message.contains("\\\""),
            "{message}"
        );
    }

    #[test]
    fn a_target_that_refuses_everything_fails() {
        let failure = std::panic::catch_unwind(|| fuzz("refuses", vec![b"a".to_vec()], |_| false));
        assert!(failure.is_err());
    }
}
