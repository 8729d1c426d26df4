//! JSON lines: a field is named by its dotted path (`a.b` in `{"a":{"b":1}}`, `c.0` for
//! the first item of an array). Scalars are read as text: strings as they are, numbers
//! and booleans as written, null as empty.

use serde_json::Value;

use super::{ParseError, Scratch};

pub(super) fn parse_into(
    line: &str,
    paths: &[Vec<String>],
    scratch: &mut Scratch,
) -> Result<(), ParseError> {
    let value: Value = serde_json::from_str(line).map_err(|_| ParseError::InvalidJson)?;
    if !value.is_object() {
        return Err(ParseError::InvalidJson);
    }
    for (slot, path) in paths.iter().enumerate() {
        let walked = path.iter().try_fold(&value, |node, part| match node {
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
    fn rejects_non_objects() {
        for line in ["[1]", "3", "{", ""] {
            assert_eq!(fields(&json(), &["a"], line), Err(ParseError::InvalidJson));
        }
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC*") {
            let _ = fields(&json(), &["a", "a.b"], &line);
        }
    }
}
