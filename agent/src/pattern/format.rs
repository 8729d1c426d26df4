//! Loghub's header formats (`<Date> <Time> <Level> <Component>: <Content>`): each `<Name>`
//! is a field matched lazily, a run of spaces between fields matches any whitespace, and
//! the rest is a regex fragment (so `\[<Pid>\]` and optional groups work). The template
//! miner reads the `<Content>` field; a format without one is refused.

use regex::Regex;

/// A checked header format.
#[derive(Debug, Clone)]
pub struct LineFormat {
    regex: Regex,
}

/// Why a format string was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the format has no <Content> field")]
    NoContent,
    #[error("the format does not compile: {0}")]
    Regex(#[from] Box<regex::Error>),
}

impl LineFormat {
    pub fn parse(format: &str) -> Result<Self, FormatError> {
        let field = Regex::new(r"<([A-Za-z_][A-Za-z0-9_]*)>").map_err(Box::new)?;
        let spaces = Regex::new(" +").map_err(Box::new)?;
        let mut pattern = String::from("^");
        let mut last = 0;
        let mut content = false;
        for found in field.captures_iter(format) {
            let whole = found.get(0).map_or(0..0, |m| m.range());
            pattern.push_str(&spaces.replace_all(&format[last..whole.start], r"\s+"));
            let name = &found[1];
            content |= name == "Content";
            pattern.push_str(&format!("(?P<{name}>.*?)"));
            last = whole.end;
        }
        pattern.push_str(&spaces.replace_all(&format[last..], r"\s+"));
        pattern.push('$');
        if !content {
            return Err(FormatError::NoContent);
        }
        Ok(Self {
            regex: Regex::new(&pattern).map_err(Box::new)?,
        })
    }

    /// The `<Content>` of `line` (surrounding whitespace stripped first), or `None` when
    /// the line does not have the format.
    pub fn content<'l>(&self, line: &'l str) -> Option<&'l str> {
        let captures = self.regex.captures(line.trim())?;
        captures.name("Content").map(|m| m.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_spaces_and_regex_fragments_follow_loghub() {
        let format =
            LineFormat::parse("<Date> <Time> <Pid> <Level> <Component>: <Content>").unwrap();
        assert_eq!(
            format.content("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating"),
            Some("PacketResponder 1 terminating")
        );
        let bracketed = LineFormat::parse(r"\[<Time>\] \[<Level>\] <Content>").unwrap();
        assert_eq!(
            bracketed.content("[Sun Dec 04 04:47:44 2005] [notice]   workerEnv.init() ok"),
            Some("workerEnv.init() ok")
        );
        let optional = LineFormat::parse(r"<Component>(\[<PID>\])?: <Content>").unwrap();
        assert_eq!(
            optional.content("crond[2915]: session closed"),
            Some("session closed")
        );
        assert_eq!(optional.content("kernel: up"), Some("up"));
        assert_eq!(format.content("no header here"), None);
    }

    #[test]
    fn a_format_without_content_or_that_does_not_compile_is_refused() {
        assert!(matches!(
            LineFormat::parse("<Date> <Time>"),
            Err(FormatError::NoContent)
        ));
        assert!(matches!(
            LineFormat::parse("(<Content>"),
            Err(FormatError::Regex(_))
        ));
    }
}
