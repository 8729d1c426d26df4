//! Regex parsing: named capture groups that took part in the match fill the fields of
//! the same name (group index → slot, resolved when the parser is built).
//!
//! A line the pattern does not match is a parse error (`no_match`), counted, not fatal.

use super::record::{ParseError, Scratch};

pub(super) fn parse_into(
    regex: &regex::Regex,
    slots: &[Option<usize>],
    line: &str,
    scratch: &mut Scratch,
) -> Result<(), ParseError> {
    let captures = regex.captures(line).ok_or(ParseError::NoMatch)?;
    for (group, slot) in slots.iter().enumerate() {
        if let (Some(slot), Some(value)) = (slot, captures.get(group)) {
            scratch.set_borrowed(*slot, line, value.as_str());
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

    fn config(pattern: &str) -> ParserConfig {
        ParserConfig {
            format: ParserFormat::Regex,
            pattern: Some(pattern.to_owned()),
            ..ParserConfig::default()
        }
    }

    #[test]
    fn named_captures_become_fields() {
        let config = config(r"^(?P<method>\S+) (?P<path>\S+)(?: (?P<opt>x))?");
        assert_eq!(
            fields(&config, &["method", "path", "opt", "other"], "GET /a").unwrap(),
            vec![Some("GET".into()), Some("/a".into()), None, None]
        );
        assert_eq!(fields(&config, &["method"], ""), Err(ParseError::NoMatch));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (line, _) = crate::parse::decode(&bytes);
            let _ = fields(&config(r"(?P<a>\w+)=(?P<b>\d+)"), &["a", "b"], &line);
        }
    }
}
