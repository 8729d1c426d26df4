//! logfmt: `key=value key="quoted value" flag`. Lenient: an unterminated quote takes the
//! rest of the line; a bare word is a key with an empty value.

use std::borrow::Cow;

use super::Record;

pub(super) fn parse_into<'a>(line: &'a str, record: &mut Record<'a>) {
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
        let key = &line[key_start..i];
        if i >= bytes.len() || bytes[i] != b'=' {
            record.push(key, "");
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
            let raw = &line[value_start..value_end];
            let value = if escaped {
                Cow::Owned(unescape(raw))
            } else {
                Cow::Borrowed(raw)
            };
            record.push(key, value);
            i = value_end + 1;
        } else {
            let value_start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            record.push(key, &line[value_start..i]);
        }
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(line: &str) -> Vec<(String, String)> {
        let mut record = Record::new(line);
        parse_into(line, &mut record);
        record
            .fields()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn parses_the_inventory_format() {
        let got =
            fields(r#"2025-07-14T09:00:00.003Z level=warn msg="hard-delete" table=orders id=123"#);
        assert_eq!(
            got,
            vec![
                ("2025-07-14T09:00:00.003Z".into(), "".into()),
                ("level".into(), "warn".into()),
                ("msg".into(), "hard-delete".into()),
                ("table".into(), "orders".into()),
                ("id".into(), "123".into()),
            ]
        );
    }

    #[test]
    fn handles_escapes_empty_values_and_broken_quotes() {
        assert_eq!(
            fields(r#"a="x \"y\" z" b= c="open"#),
            vec![
                ("a".into(), r#"x "y" z"#.into()),
                ("b".into(), "".into()),
                ("c".into(), "open".into()),
            ]
        );
        assert_eq!(fields("= =x  "), vec![("x".into(), "".into())]);
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC*") {
            let _ = fields(&line);
        }

        #[test]
        fn round_trips_simple_pairs(pairs in proptest::collection::vec(("[a-z_]{1,8}", "[a-zA-Z0-9 ._/-]{0,12}"), 0..6)) {
            let line = pairs
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(" ");
            let expected: Vec<(String, String)> = pairs.clone();
            prop_assert_eq!(fields(&line), expected);
        }
    }
}
