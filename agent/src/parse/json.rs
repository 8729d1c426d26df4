//! JSON lines: a field is named by its dotted path (`a.b` in `{"a":{"b":1}}`, `c.0` for
//! the first item of an array). Scalars are read as text: strings as they are, numbers
//! and booleans as written, null as empty. A document that is Kafka Connect's JSON
//! envelope (exactly `schema` and an object `payload`, as Debezium writes with schemas
//! on) is read through to its payload, so change-event rules work with or without it.

use serde_json::Value;

use super::record::{ParseError, Scratch};

pub(super) fn parse_into(
    line: &str,
    paths: &[Vec<String>],
    scratch: &mut Scratch,
) -> Result<(), ParseError> {
    let value: Value = serde_json::from_str(line).map_err(|_| ParseError::InvalidJson)?;
    let root = root(&value)?;
    for (slot, path) in paths.iter().enumerate() {
        let walked = path.iter().try_fold(root, |node, part| match node {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        });
        let Some(leaf) = walked else { continue };
        match leaf {
            Value::String(s) => scratch.set_owned(slot, |out| out.push_str(s)),
            Value::Number(n) => scratch.set_owned(slot, |out| out.push_str(&n.to_string())),
            Value::Bool(b) => {
                scratch.set_owned(slot, |out| out.push_str(if *b { "true" } else { "false" }))
            }
            Value::Null => scratch.set_owned(slot, |_| {}),
            Value::Object(_) | Value::Array(_) => {}
        }
    }
    Ok(())
}

/// The document rules read: the object itself, or the payload of a Connect envelope.
fn root(value: &Value) -> Result<&Value, ParseError> {
    let Value::Object(document) = value else {
        return Err(ParseError::InvalidJson);
    };
    Ok(
        match (
            document.len(),
            document.get("schema"),
            document.get("payload"),
        ) {
            (2, Some(_), Some(payload @ Value::Object(_))) => payload,
            _ => value,
        },
    )
}

/// The dotted paths of `line`'s scalars (an audit's did-you-mean candidates), at most a
/// few levels and a few hundred deep, so a hostile line costs little.
pub(super) fn keys(line: &str) -> Vec<String> {
    const DEPTH: usize = 4;
    const MAX: usize = 256;
    fn walk(node: &Value, path: &mut String, depth: usize, out: &mut Vec<String>) {
        let Value::Object(map) = node else {
            if !path.is_empty() {
                out.push(path.clone());
            }
            return;
        };
        for (key, child) in map {
            if out.len() >= MAX || depth >= DEPTH {
                return;
            }
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            walk(child, path, depth + 1, out);
            path.truncate(len);
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        if let Ok(root) = root(&value) {
            walk(root, &mut String::new(), 0, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{ParserConfig, ParserFormat};
    use crate::parse::testing::fields;
    use crate::parse::ParseError;
    use proptest::prelude::*;

    fn json() -> ParserConfig {
        ParserConfig {
            format: ParserFormat::Json,
            ..ParserConfig::default()
        }
    }

    #[test]
    fn reads_fields_by_dotted_path() {
        let line = r#"{"ts":"2025-07-14T09:00:00Z","req":{"status":500,"ok":false},"tags":["a","b"],"n":null}"#;
        assert_eq!(
            fields(
                &json(),
                &["req.status", "req.ok", "tags.1", "n", "req", "req.missing"],
                line
            )
            .unwrap(),
            vec![
                Some("500".into()),
                Some("false".into()),
                Some("b".into()),
                Some("".into()),
                None,
                None
            ]
        );
    }

    #[test]
    fn reads_through_the_connect_envelope_only_when_it_is_one() {
        let enveloped =
            r#"{"schema":{"type":"struct"},"payload":{"op":"d","source":{"table":"orders"}}}"#;
        let bare = r#"{"op":"d","source":{"table":"orders"}}"#;
        for line in [enveloped, bare] {
            assert_eq!(
                fields(&json(), &["op", "source.table"], line).unwrap(),
                vec![Some("d".into()), Some("orders".into())],
                "{line}"
            );
        }
        // A log that merely has a payload field is read as it is.
        let log = r#"{"schema":"v2","payload":{"op":"x"},"op":"y"}"#;
        assert_eq!(
            fields(&json(), &["op", "payload.op"], log).unwrap(),
            vec![Some("y".into()), Some("x".into())]
        );
    }

    #[test]
    fn rejects_non_objects() {
        for line in ["[1]", "3", "{", ""] {
            assert_eq!(fields(&json(), &["a"], line), Err(ParseError::InvalidJson));
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (line, _) = crate::parse::decode(&bytes);
            let _ = fields(&json(), &["a", "a.b"], &line);
        }
    }
}
