//! Framing: bytes → lines → records. Holds a partial last line until its newline, cuts
//! overlong lines (the cut part is skipped up to the next newline), strips `\r\n`, and
//! joins continuation lines to the record before them when multi-line is configured.
//!
//! Invariant: `committed()` is the offset of the first byte not yet handed out as part of
//! a record, so resuming from it replays exactly what was not yet counted.

use regex::bytes::Regex;

use std::path::Path;

use crate::config::{ConfigError, LimitsConfig, ParserConfig, RulesConfig};

/// The largest line limit a rules file may set (1 GiB): record offsets stay within u32.
pub const MAX_LINE_BYTES: usize = 1 << 30;

/// How a stream is cut into records (from the rules file).
#[derive(Debug, Clone)]
pub struct Framing {
    pub max_line_bytes: usize,
    pub continuation: Option<Regex>,
    pub max_lines: usize,
}

impl Framing {
    /// The framing a rules file asks for (its `parser` and `limits` sections); errors
    /// name the file and the field, under the rule `(parser)`.
    pub fn from_rules(rules: &RulesConfig, path: &Path) -> Result<Self, ConfigError> {
        Self::build(&rules.parser, &rules.limits).map_err(|(field, message)| ConfigError::Invalid {
            path: path.to_owned(),
            rule: "(parser)".to_owned(),
            field,
            message,
        })
    }

    pub fn build(parser: &ParserConfig, limits: &LimitsConfig) -> Result<Self, (String, String)> {
        if limits.max_line_bytes == 0 || limits.max_line_bytes > MAX_LINE_BYTES {
            return Err((
                "limits.max_line_bytes".into(),
                format!("must be between 1 and {MAX_LINE_BYTES}"),
            ));
        }
        let (continuation, max_lines) = match &parser.multiline {
            Some(m) => {
                let regex = Regex::new(&m.continuation)
                    .map_err(|e| ("parser.multiline.continuation".to_owned(), e.to_string()))?;
                if m.max_lines == 0 {
                    return Err((
                        "parser.multiline.max_lines".into(),
                        "must be at least 1".into(),
                    ));
                }
                (Some(regex), m.max_lines)
            }
            None => (None, 1),
        };
        Ok(Self {
            max_line_bytes: limits.max_line_bytes,
            continuation,
            max_lines,
        })
    }
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            continuation: None,
            max_lines: 1,
        }
    }
}

#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    /// Offset in the stream of the next byte `feed` will see.
    position: u64,
    /// Bytes of an incomplete line (at most `max_line_bytes`).
    partial: Vec<u8>,
    partial_start: u64,
    /// The partial line passed the limit: the rest of it is being skipped.
    partial_truncated: bool,
    /// A multi-line record being assembled.
    record: Vec<u8>,
    record_start: u64,
    record_lines: usize,
    record_truncated: bool,
}

impl Framer {
    pub fn new(framing: Framing, position: u64) -> Self {
        Self {
            framing,
            position,
            partial: Vec::new(),
            partial_start: position,
            partial_truncated: false,
            record: Vec::new(),
            record_start: position,
            record_lines: 0,
            record_truncated: false,
        }
    }

    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// The offset to resume from: the first byte of anything not yet handed out.
    pub fn committed(&self) -> u64 {
        if self.record_lines > 0 {
            self.record_start
        } else if !self.partial.is_empty() || self.partial_truncated {
            self.partial_start
        } else {
            self.position
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Feeds the next bytes of the stream; complete records go to `emit(record, truncated)`.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while !chunk.is_empty() {
            let newline = memchr::memchr(b'\n', chunk);
            let line_end = newline.unwrap_or(chunk.len());
            let consumed = newline.map_or(chunk.len(), |n| n + 1);
            let line_start_offset = self.position;
            self.position += consumed as u64;
            if newline.is_none() {
                // An incomplete line: hold it (up to the limit) until its newline.
                if self.partial.is_empty() && !self.partial_truncated {
                    self.partial_start = line_start_offset;
                }
                let room = self
                    .framing
                    .max_line_bytes
                    .saturating_sub(self.partial.len());
                if chunk.len() > room {
                    self.partial_truncated = true;
                }
                self.partial
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                return;
            }
            let body = &chunk[..line_end];
            if self.partial.is_empty() && !self.partial_truncated {
                let (line, truncated) = self.cut(body);
                self.line(line_start_offset, line, truncated, emit);
            } else {
                let room = self
                    .framing
                    .max_line_bytes
                    .saturating_sub(self.partial.len());
                let truncated = self.partial_truncated || body.len() > room;
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&body[..body.len().min(room)]);
                self.partial_truncated = false;
                let start = self.partial_start;
                self.line(start, strip_cr(&line), truncated, emit);
                line.clear();
                self.partial = line;
            }
            chunk = &chunk[consumed..];
        }
    }

    fn cut<'b>(&self, body: &'b [u8]) -> (&'b [u8], bool) {
        let body = strip_cr(body);
        if body.len() > self.framing.max_line_bytes {
            (&body[..self.framing.max_line_bytes], true)
        } else {
            (body, false)
        }
    }

    fn line(
        &mut self,
        start: u64,
        line: &[u8],
        truncated: bool,
        emit: &mut dyn FnMut(&[u8], bool),
    ) {
        let Some(continuation) = &self.framing.continuation else {
            // A record held from before multi-line was turned off (a reload) goes first.
            self.flush_record(emit);
            emit(line, truncated);
            return;
        };
        let continues = self.record_lines > 0
            && self.record_lines < self.framing.max_lines
            && continuation.is_match(line);
        if continues {
            self.record.push(b'\n');
            self.record.extend_from_slice(line);
            self.record_lines += 1;
            self.record_truncated |= truncated;
            return;
        }
        self.flush_record(emit);
        self.record.extend_from_slice(line);
        self.record_start = start;
        self.record_lines = 1;
        self.record_truncated = truncated;
    }

    fn flush_record(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if self.record_lines > 0 {
            emit(&self.record, self.record_truncated);
            self.record.clear();
            self.record_lines = 0;
            self.record_truncated = false;
        }
    }

    /// Hands out a held multi-line record (input went quiet); with `end_of_input`, also a
    /// last line that never got its newline.
    pub fn flush(&mut self, end_of_input: bool, emit: &mut dyn FnMut(&[u8], bool)) {
        if end_of_input && (!self.partial.is_empty() || self.partial_truncated) {
            let line = std::mem::take(&mut self.partial);
            let truncated = std::mem::replace(&mut self.partial_truncated, false);
            let start = self.partial_start;
            self.line(start, strip_cr(&line), truncated, emit);
        }
        self.flush_record(emit);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framing(max: usize, continuation: Option<&str>) -> Framing {
        Framing {
            max_line_bytes: max,
            continuation: continuation.map(|c| Regex::new(c).unwrap()),
            max_lines: 3,
        }
    }

    fn run(framer: &mut Framer, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, &mut |r, t| {
                out.push((String::from_utf8_lossy(r).into_owned(), t))
            });
        }
        out
    }

    #[test]
    fn holds_partial_lines_and_commits_after_complete_ones() {
        let mut framer = Framer::new(framing(100, None), 10);
        let out = run(&mut framer, &[b"ab", b"c\r\nde", b"f\ngh"]);
        assert_eq!(out, vec![("abc".into(), false), ("def".into(), false)]);
        assert_eq!(framer.committed(), 10 + 9);
        assert_eq!(framer.position(), 10 + 11);
        let mut last = Vec::new();
        framer.flush(true, &mut |r, _| last.push(r.to_vec()));
        assert_eq!(last, vec![b"gh".to_vec()]);
        assert_eq!(framer.committed(), 21);
    }

    #[test]
    fn cuts_overlong_lines_and_skips_their_rest() {
        let mut framer = Framer::new(framing(4, None), 0);
        let out = run(&mut framer, &[b"abcdefgh\nxy", b"zzzzzz", b"zz\nok\n"]);
        assert_eq!(
            out,
            vec![
                ("abcd".into(), true),
                ("xyzz".into(), true),
                ("ok".into(), false)
            ]
        );
        assert_eq!(framer.committed(), framer.position());
    }

    #[test]
    fn turning_multiline_off_hands_out_the_held_record_first() {
        let mut framer = Framer::new(framing(100, Some(r"^\s")), 0);
        assert!(run(&mut framer, &[b"msg=x\n"]).is_empty());
        framer.set_framing(framing(100, None));
        let out = run(&mut framer, &[b"msg=y\nmsg=z\n"]);
        assert_eq!(out.len(), 3);
        assert_eq!(framer.committed(), framer.position());
    }

    #[test]
    fn a_crlf_line_of_exactly_the_limit_is_not_cut() {
        let mut framer = Framer::new(framing(4, None), 0);
        assert_eq!(
            run(&mut framer, &[b"abcd\r\n"]),
            vec![("abcd".into(), false)]
        );
    }

    #[test]
    fn joins_continuation_lines() {
        let mut framer = Framer::new(framing(100, Some(r"^\s")), 0);
        let out = run(
            &mut framer,
            &[b"error x\n  at a\n  at b\nnext\n  at c\n  at d\n  at e\n  at f\n"],
        );
        assert_eq!(
            out,
            vec![
                ("error x\n  at a\n  at b".into(), false),
                ("next\n  at c\n  at d".into(), false),
            ]
        );
        // "  at e" started a record (max_lines 3), still held: commit points at its start.
        assert_eq!(framer.committed(), 41);
        let mut rest = Vec::new();
        framer.flush(false, &mut |r, _| {
            rest.push(String::from_utf8_lossy(r).into_owned())
        });
        assert_eq!(rest, vec!["  at e\n  at f".to_owned()]);
    }

    proptest! {
        /// However the input is chunked, the records are the same, and resuming from
        /// `committed()` after any prefix replays exactly the missing records.
        #[test]
        fn chunking_and_resuming_are_exact(
            text in "[ab \n]{0,80}",
            cut in 0usize..80,
            resume_at in 0usize..80,
        ) {
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let resume_at = resume_at.min(bytes.len());
            let whole = {
                let mut f = Framer::new(framing(5, Some("^ ")), 0);
                let mut out = run(&mut f, &[bytes]);
                f.flush(true, &mut |r, t| out.push((String::from_utf8_lossy(r).into_owned(), t)));
                out
            };
            let chunked = {
                let mut f = Framer::new(framing(5, Some("^ ")), 0);
                let mut out = run(&mut f, &[&bytes[..cut], &bytes[cut..]]);
                f.flush(true, &mut |r, t| out.push((String::from_utf8_lossy(r).into_owned(), t)));
                out
            };
            prop_assert_eq!(&whole, &chunked);
            let mut first = Framer::new(framing(5, Some("^ ")), 0);
            let before = run(&mut first, &[&bytes[..resume_at]]);
            let committed = first.committed() as usize;
            let mut second = Framer::new(framing(5, Some("^ ")), committed as u64);
            let mut after = run(&mut second, &[&bytes[committed..]]);
            second.flush(true, &mut |r, t| after.push((String::from_utf8_lossy(r).into_owned(), t)));
            let mut joined = before;
            joined.extend(after);
            prop_assert_eq!(joined, whole);
        }
    }
}
