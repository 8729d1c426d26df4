//! Records framed and parsed away from the pipeline thread: a batch holds each record's
//! text (lossily decoded if it was not UTF-8), its field spans and event time, so the
//! pipeline thread only applies rules, in order.

use super::parser::Parser;
use super::record::{decode, EventTime, ParseError, Record, Scratch, Span};

#[derive(Debug, Clone, Copy)]
struct Item {
    text: (u32, u32),
    side: (u32, u32),
    spans_start: u32,
    outcome: Result<EventTime, ParseError>,
    mask: Option<u128>,
    truncated: bool,
    invalid_utf8: bool,
}

/// Parsed records of one stream, in stream order.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    text: String,
    side: String,
    spans: Vec<Option<Span>>,
    items: Vec<Item>,
    slots: usize,
}

/// One record of a batch, as the pipeline applies it.
#[derive(Debug, Clone, Copy)]
pub struct ParsedRecord<'b> {
    /// The fields and event time, or why the record did not parse.
    pub parsed: Result<(Record<'b>, EventTime), ParseError>,
    /// Which of the rules' matchers matched, when the reader computed it.
    pub mask: Option<u128>,
    pub truncated: bool,
    pub invalid_utf8: bool,
}

impl ParsedBatch {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.side.clear();
        self.spans.clear();
        self.items.clear();
    }

    /// Decodes and parses one record, appending it to the batch with the mask `matcher`
    /// computes from its fields.
    pub fn push(
        &mut self,
        parser: &Parser,
        scratch: &mut Scratch,
        bytes: &[u8],
        truncated: bool,
        matcher: impl FnOnce(Record<'_>) -> Option<u128>,
    ) {
        let (text, invalid_utf8) = decode(bytes);
        let mut mask = None;
        let outcome = parser.parse(&text, scratch).map(|()| {
            let record = Record::new(&text, scratch);
            mask = matcher(record);
            parser.event_time(&record)
        });
        let text_start = self.text.len();
        self.text.push_str(&text);
        let side_start = self.side.len();
        let spans_start = self.spans.len();
        if outcome.is_ok() {
            self.slots = scratch.spans.len();
            self.side.push_str(&scratch.side);
            self.spans.extend_from_slice(&scratch.spans);
        }
        self.items.push(Item {
            text: (text_start as u32, self.text.len() as u32),
            side: (side_start as u32, self.side.len() as u32),
            spans_start: spans_start as u32,
            outcome,
            mask,
            truncated,
            invalid_utf8,
        });
    }

    pub fn records(&self) -> impl Iterator<Item = ParsedRecord<'_>> {
        self.items.iter().map(move |item| {
            let raw = &self.text[item.text.0 as usize..item.text.1 as usize];
            let side = &self.side[item.side.0 as usize..item.side.1 as usize];
            let spans_start = item.spans_start as usize;
            let spans = self
                .spans
                .get(spans_start..spans_start + self.slots)
                .unwrap_or(&[]);
            ParsedRecord {
                parsed: item
                    .outcome
                    .map(|time| (Record::from_parts(raw, spans, side), time)),
                mask: item.mask,
                truncated: item.truncated,
                invalid_utf8: item.invalid_utf8,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ParserConfig, TimestampConfig};
    use crate::parse::FieldNames;

    #[test]
    fn a_batch_gives_back_what_parsing_each_record_gives() {
        let config = ParserConfig {
            timestamp: Some(TimestampConfig {
                field: Some("t".into()),
                token: None,
                format: "unix".into(),
            }),
            ..ParserConfig::default()
        };
        let mut fields = FieldNames::default();
        let msg = fields.slot("msg");
        let parser = Parser::build(&config, fields).unwrap();
        let mut scratch = Scratch::default();
        let mut batch = ParsedBatch::default();
        let lines: [&[u8]; 3] = [
            b"t=1 msg=\"a \\\"b\\\"\"",
            b"t=x msg=\xff",
            b"msg=plain t=3",
        ];
        for (i, line) in lines.iter().enumerate() {
            batch.push(&parser, &mut scratch, line, i == 2, |_| None);
        }
        let got: Vec<(Option<String>, EventTime, bool, bool)> = batch
            .records()
            .map(|r| {
                let (record, time) = r.parsed.unwrap();
                (
                    record.get(msg).map(str::to_owned),
                    time,
                    r.truncated,
                    r.invalid_utf8,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Some("a \"b\"".into()),
                    EventTime::At(1_000_000_000),
                    false,
                    false
                ),
                (Some("\u{fffd}".into()), EventTime::Unreadable, false, true),
                (
                    Some("plain".into()),
                    EventTime::At(3_000_000_000),
                    true,
                    false
                ),
            ]
        );
    }
}
