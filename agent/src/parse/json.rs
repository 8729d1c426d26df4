//! JSON lines: every scalar leaf becomes a field named by its dotted path
//! (`{"a":{"b":1},"c":[true]}` gives `a.b=1` and `c.0=true`).

use serde_json::Value;

use super::{ParseError, Record};

pub(super) fn parse_into(line: &str, record: &mut Record<'_>) -> Result<(), ParseError> {
    let value: Value = serde_json::from_str(line).map_err(|_| ParseError::InvalidJson)?;
    if !value.is_object() {
        return Err(ParseError::InvalidJson);
    }
    let mut path = String::new();
    flatten(&value, &mut path, record);
    Ok(())
}

fn flatten(value: &Value, path: &mut String, record: &mut Record<'_>) {
    let prefix_len = path.len();
    let child = |key: &str, value: &Value, path: &mut String, record: &mut Record<'_>| {
        if prefix_len > 0 {
            path.push('.');
        }
        path.push_str(key);
        flatten(value, path, record);
        path.truncate(prefix_len);
    };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                child(key, value, path, record);
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter().enumerate() {
                child(&index.to_string(), value, path, record);
            }
        }
        Value::String(s) => record.push(path.clone(), s.clone()),
        Value::Number(n) => record.push(path.clone(), n.to_string()),
        Value::Bool(b) => record.push(path.clone(), b.to_string()),
        Value::Null => record.push(path.clone(), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flattens_by_dotted_path() {
        let line = r#"{"ts":"2025-07-14T09:00:00Z","req":{"status":500,"ok":false},"tags":["a","b"],"n":null}"#;
        let mut record = Record::new(line);
        parse_into(line, &mut record).unwrap();
        assert_eq!(record.get("req.status"), Some("500"));
        assert_eq!(record.get("req.ok"), Some("false"));
        assert_eq!(record.get("tags.1"), Some("b"));
        assert_eq!(record.get("n"), Some(""));
        assert_eq!(record.get("req"), None);
    }

    #[test]
    fn rejects_non_objects() {
        for line in ["[1]", "3", "{", ""] {
            let mut record = Record::new(line);
            assert_eq!(parse_into(line, &mut record), Err(ParseError::InvalidJson));
        }
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC*") {
            let mut record = Record::new(&line);
            let _ = parse_into(&line, &mut record);
        }
    }
}
