//! Regex parsing: each named capture group that took part in the match becomes a field.

use super::{ParseError, Record};

pub(super) fn parse_into<'a>(
    regex: &'a regex::Regex,
    line: &'a str,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let captures = regex.captures(line).ok_or(ParseError::NoMatch)?;
    for (index, name) in regex.capture_names().enumerate() {
        if let (Some(name), Some(value)) = (name, captures.get(index)) {
            record.push(name, value.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn named_captures_become_fields() {
        let regex = regex::Regex::new(r"^(?P<method>\S+) (?P<path>\S+)(?: (?P<opt>x))?").unwrap();
        let mut record = Record::new("GET /a");
        parse_into(&regex, "GET /a", &mut record).unwrap();
        assert_eq!(record.get("method"), Some("GET"));
        assert_eq!(record.get("path"), Some("/a"));
        assert_eq!(record.get("opt"), None);
        let mut other = Record::new("");
        assert_eq!(parse_into(&regex, "", &mut other), Err(ParseError::NoMatch));
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC*") {
            let regex = regex::Regex::new(r"(?P<a>\w+)=(?P<b>\d+)").unwrap();
            let mut record = Record::new(&line);
            let _ = parse_into(&regex, &line, &mut record);
        }
    }
}
