//! logfmt: `key=value key="quoted value" flag`. Lenient: an unterminated quote takes the
//! rest of the line; a bare word is a key with an empty value. Only keys a rule reads
//! are kept.

use super::record::{FieldNames, Scratch};

pub(super) fn parse_into(line: &str, fields: &FieldNames, scratch: &mut Scratch) {
    scan(line, |key| fields.find(key), scratch);
}

/// Every key of `line`, in order (an audit's did-you-mean candidates).
pub(super) fn keys(line: &str) -> Vec<String> {
    let mut keys = Vec::new();
    scan(
        line,
        |key| {
            keys.push(key.to_owned());
            None
        },
        &mut Scratch::default(),
    );
    keys
}

/// Walks `line`'s fields; the value of a key `slot_of` gives a slot is kept in `scratch`.
fn scan(line: &str, mut slot_of: impl FnMut(&str) -> Option<usize>, scratch: &mut Scratch) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if key_start == i {
            // A stray `=`: skip it.
            i += 1;
            continue;
        }
        let slot = slot_of(&line[key_start..i]);
        if i >= bytes.len() || bytes[i] != b'=' {
            if let Some(slot) = slot {
                scratch.set_borrowed(slot, line, &line[i..i]);
            }
            continue;
        }
        i += 1; // '='
        if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let value_start = i;
            let mut escaped = false;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            let value_end = i.min(bytes.len());
            if let Some(slot) = slot {
                let raw = &line[value_start..value_end];
                if escaped {
                    scratch.set_owned(slot, |out| unescape(raw, out));
                } else {
                    scratch.set_borrowed(slot, line, raw);
                }
            }
            i = value_end + 1;
        } else {
            let value_start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if let Some(slot) = slot {
                scratch.set_borrowed(slot, line, &line[value_start..i]);
            }
        }
    }
}

fn unescape(raw: &str, out: &mut String) {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ParserConfig;
    use crate::parse::testing::fields;
    use proptest::prelude::*;

    fn logfmt(names: &[&str], line: &str) -> Vec<Option<String>> {
        fields(&ParserConfig::default(), names, line).unwrap()
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    #[test]
    fn parses_the_inventory_format() {
        let line = r#"2025-07-14T09:00:00.003Z level=warn msg="hard-delete" table=orders id=123"#;
        assert_eq!(
            logfmt(
                &["msg", "table", "id", "level", "2025-07-14T09:00:00.003Z"],
                line
            ),
            some(&["hard-delete", "orders", "123", "warn", ""])
        );
        assert_eq!(logfmt(&["actor"], line), vec![None]);
    }

    #[test]
    fn handles_escapes_empty_values_repeats_and_broken_quotes() {
        assert_eq!(
            logfmt(&["a", "b", "c", "d"], r#"a="x \"y\" z" b= c="open d=1"#),
            vec![
                Some(r#"x "y" z"#.into()),
                Some("".into()),
                Some("open d=1".into()),
                None
            ]
        );
        assert_eq!(logfmt(&["x"], "= =x  "), some(&[""]));
        assert_eq!(logfmt(&["k"], "k=1 k=2"), some(&["1"]));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (line, _) = crate::parse::decode(&bytes);
            let _ = logfmt(&["a", "msg", "b"], &line);
        }

        #[test]
        fn round_trips_simple_pairs(pairs in proptest::collection::btree_map("[a-z_]{1,8}", "[a-zA-Z0-9 ._/\\\\\"-]{0,12}", 0..6)) {
            let line = pairs
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(" ");
            let names: Vec<&str> = pairs.keys().map(String::as_str).collect();
            let expected: Vec<Option<String>> = pairs.values().cloned().map(Some).collect();
            prop_assert_eq!(logfmt(&names, &line), expected);
        }
    }
}
