//! Tokens of a log message, and which of them hold a variable.
//!
//! A message is cut at whitespace and at `=` and `,` (so `uid=0,` is the tokens `uid` and
//! `0`), and the text between tokens is kept for the template's text. A token is masked,
//! taken as a variable before any comparison, when it holds a digit (numbers, ids, hex,
//! addresses, times, sizes and durations) or is a path (a `/` in more than one
//! character). One rule for every log: no per-system patterns.

use std::ops::Range;

/// One token: where it is in the message, and whether it is masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub range: Range<usize>,
    pub masked: bool,
}

/// The tokens of one message, in a buffer reused from message to message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tokens {
    items: Vec<Token>,
}

fn is_separator(byte: u8) -> bool {
    byte.is_ascii_whitespace() || byte == b'=' || byte == b','
}

/// Whether a token holds a variable (see the module).
pub fn is_variable(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_digit) || (token.len() > 1 && token.contains(&b'/'))
}

/// Cuts `message` into `tokens` (cleared first).
pub fn tokenize(message: &str, tokens: &mut Tokens) {
    tokens.items.clear();
    let bytes = message.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        while at < bytes.len() && is_separator(bytes[at]) {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !is_separator(bytes[at]) {
            at += 1;
        }
        if at > start {
            tokens.items.push(Token {
                range: start..at,
                masked: is_variable(&bytes[start..at]),
            });
        }
    }
}

/// FNV-1a, 64 bits: the same hash in every build, so ids are stable.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Token> {
        self.items.iter()
    }

    /// Hash of the first `count` tokens (masked ones as one wildcard) after the number
    /// of tokens.
    fn hash_prefix(&self, message: &str, count: usize) -> u64 {
        let mut hash = Fnv::new();
        hash.write(&(self.items.len() as u64).to_le_bytes());
        for token in self.items.iter().take(count) {
            // 0xff never occurs in UTF-8, so tokens cannot run into each other.
            hash.write(&[0xff]);
            match token.masked {
                true => hash.write(&[0xfe]),
                false => hash.write(message[token.range.clone()].as_bytes()),
            }
        }
        hash.0
    }

    /// The index key: the number of tokens and the first `depth`.
    pub fn key(&self, message: &str, depth: usize) -> u64 {
        self.hash_prefix(message, depth)
    }

    /// A hash of all the tokens, masked ones as wildcards: a template's id.
    pub fn fingerprint(&self, message: &str) -> u64 {
        self.hash_prefix(message, usize::MAX)
    }

    /// The text before the first token, between tokens, and after the last.
    pub fn glue<'m>(&'m self, message: &'m str) -> impl Iterator<Item = &'m str> + 'm {
        let starts = self
            .items
            .iter()
            .map(|t| t.range.start)
            .chain([message.len()]);
        let ends = [0]
            .into_iter()
            .chain(self.items.iter().map(|t| t.range.end));
        ends.zip(starts)
            .map(move |(end, start)| &message[end..start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(message: &str) -> Vec<(String, bool)> {
        let mut tokens = Tokens::default();
        tokenize(message, &mut tokens);
        tokens
            .iter()
            .map(|t| (message[t.range.clone()].to_owned(), t.masked))
            .collect()
    }

    #[test]
    fn messages_are_cut_at_whitespace_equals_and_commas() {
        assert_eq!(
            texts("  acquire lock=2335, tag=View\tLock,ok "),
            [
                ("acquire".to_owned(), false),
                ("lock".to_owned(), false),
                ("2335".to_owned(), true),
                ("tag".to_owned(), false),
                ("View".to_owned(), false),
                ("Lock".to_owned(), false),
                ("ok".to_owned(), false),
            ]
        );
        assert!(texts(" ,= ").is_empty());
    }

    #[test]
    fn variables_are_tokens_with_digits_or_paths() {
        for variable in [
            "42",
            "0x1f",
            "10.0.0.1:8080",
            "blk_-1608999687919862906",
            "12:01:01",
            "1.2KB",
            "/var/log",
            "a/b",
            "2ms",
        ] {
            assert!(is_variable(variable.as_bytes()), "{variable}");
        }
        for word in ["ssh", "user", "/", "Exception:", "INFO", "[preauth]", "-"] {
            assert!(!is_variable(word.as_bytes()), "{word}");
        }
    }

    #[test]
    fn the_glue_rebuilds_the_message() {
        let message = " a=1,  b c ";
        let mut tokens = Tokens::default();
        tokenize(message, &mut tokens);
        let glue: Vec<&str> = tokens.glue(message).collect();
        assert_eq!(glue, [" ", "=", ",  ", " ", " "]);
    }

    proptest! {
        #[test]
        fn tokens_and_glue_cover_any_message_exactly(message in "\\PC{0,40}") {
            let mut tokens = Tokens::default();
            tokenize(&message, &mut tokens);
            let mut rebuilt = String::new();
            let glue: Vec<&str> = tokens.glue(&message).collect();
            prop_assert_eq!(glue.len(), tokens.len() + 1);
            for (token, glue) in tokens.iter().zip(&glue) {
                rebuilt.push_str(glue);
                rebuilt.push_str(&message[token.range.clone()]);
            }
            rebuilt.push_str(glue.last().unwrap());
            prop_assert_eq!(rebuilt, message);
        }
    }
}
