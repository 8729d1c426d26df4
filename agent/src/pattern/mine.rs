//! `omen agent patterns`: mines a finished log once and reports its templates, largest
//! first, and optionally which template each line was given when it arrived (the
//! prediction format of Loghub's template scorers: `line,id,template`).

use std::io::{self, BufRead, Write};

use super::format::LineFormat;
use super::miner::{PatternId, TemplateMiner};

/// What mining a log found.
#[derive(Debug)]
pub struct Mined {
    pub miner: TemplateMiner,
    /// Lines mined.
    pub lines: u64,
    /// The id each line was given when it arrived, in line order (when asked for).
    pub assigned: Vec<PatternId>,
    /// Lines that did not have the format (mined whole).
    pub unformatted: u64,
    /// Lines that were not UTF-8 (mined with replacement characters).
    pub not_utf8: u64,
}

/// Mines every line of `input`; with a `format`, the `<Content>` field of each line.
/// With `record`, keeps the id each line was given (4 bytes a line).
pub fn mine(
    input: impl BufRead,
    format: Option<&LineFormat>,
    mut miner: TemplateMiner,
    record: bool,
) -> io::Result<Mined> {
    let (mut assigned, mut lines, mut unformatted, mut not_utf8) = (Vec::new(), 0, 0, 0);
    let mut input = input;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        while raw.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            raw.pop();
        }
        let line = match std::str::from_utf8(&raw) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => {
                not_utf8 += 1;
                String::from_utf8_lossy(&raw)
            }
        };
        let message = match format {
            None => &line[..],
            Some(format) => format.content(&line).unwrap_or_else(|| {
                unformatted += 1;
                &line[..]
            }),
        };
        let id = miner.add(message).id;
        lines += 1;
        if record {
            assigned.push(id);
        }
    }
    Ok(Mined {
        miner,
        lines,
        assigned,
        unformatted,
        not_utf8,
    })
}

/// Writes `line,id,template` for every line (1-based), the template as it stands at the
/// end, quoted as CSV.
pub fn write_assignments(mined: &Mined, out: &mut impl Write) -> io::Result<()> {
    let texts: std::collections::HashMap<PatternId, String> = mined
        .miner
        .templates()
        .map(|t| (t.id, csv_field(&t.text())))
        .collect();
    writeln!(out, "line,id,template")?;
    for (line, id) in mined.assigned.iter().enumerate() {
        let text = texts.get(id).map_or("", String::as_str);
        writeln!(out, "{},{id},{text}", line + 1)?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes the templates, largest first: count, id and text, one a line.
pub fn write_templates(mined: &Mined, out: &mut impl Write) -> io::Result<()> {
    let mut templates: Vec<_> = mined.miner.templates().collect();
    templates.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    for template in templates {
        writeln!(
            out,
            "{:>9} {} {}",
            template.count,
            template.id,
            template.text()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::MinerConfig;

    #[test]
    fn lines_are_assigned_in_order_and_templates_listed_largest_first() {
        let log = "2024 INFO user 1 logged in\n2024 INFO user 2 logged in\r\n2024 WARN disk, \"full\"\nno header\n";
        let format = LineFormat::parse("<Date> <Level> <Content>").unwrap();
        let miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let mined = mine(log.as_bytes(), Some(&format), miner, true).unwrap();
        assert_eq!(mined.assigned.len(), 4);
        assert_eq!(mined.assigned[0], mined.assigned[1]);
        assert_eq!(mined.unformatted, 1);
        let mut templates = Vec::new();
        write_templates(&mined, &mut templates).unwrap();
        let templates = String::from_utf8(templates).unwrap();
        assert!(templates.starts_with(&format!(
            "        2 {} user <*> logged in\n",
            mined.assigned[0]
        )));
        let mut csv = Vec::new();
        write_assignments(&mined, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "line,id,template");
        assert_eq!(
            rows[3],
            format!("3,{},\"disk, \"\"full\"\"\"", mined.assigned[2])
        );
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_mined_and_counted() {
        let miner = TemplateMiner::new(MinerConfig::default()).unwrap();
        let mined = mine(&b"ok \xff\xfe line\n"[..], None, miner, false).unwrap();
        assert_eq!((mined.lines, mined.not_utf8), (1, 1));
        assert!(mined.assigned.is_empty());
    }
}
