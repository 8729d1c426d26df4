#![doc = include_str!("../README.md")]

pub mod backtest;
pub mod ingest;
pub mod model;
pub mod series;
pub mod traces;
pub mod wire;

#[cfg(test)]
mod fuzz_tests;

/// At most `chars` characters of `text`, with `…` after a cut: what an error quotes of an
/// input that may be megabytes long.
pub(crate) fn abbreviate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// How many characters of an input field an error quotes.
pub(crate) const QUOTED_CHARS: usize = 64;
