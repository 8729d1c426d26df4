//! omen's runbooks (`docs/runbooks.md`) as one HTML page, which both servers answer on
//! `/runbooks`: the `runbook_url` of every alert, in `alerts/` and in what the detector
//! sends, points at one of its sections.
//!
//! The Markdown is compiled in, so the page needs no file at run time and always matches
//! the binary's alerts. Rendering is pulldown-cmark's; only the headings' `id`s are ours.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response};
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

/// The runbooks' Markdown source.
pub const MARKDOWN: &str = include_str!("../../docs/runbooks.md");

/// A heading's anchor by GitHub's rule, so a link works on the repository's rendering of
/// the file too: lowercase, spaces as `-`, only letters, digits, `-` and `_` kept.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The events of `markdown`, each heading given its anchor as `id`.
fn events(markdown: &str) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    let mut heading: Option<(Tag<'_>, Vec<Event<'_>>)> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match (event, &mut heading) {
            (Event::Start(tag @ Tag::Heading { .. }), _) => heading = Some((tag, Vec::new())),
            (Event::End(TagEnd::Heading(level)), Some(_)) => {
                let (tag, inner) = heading.take().expect("matched Some");
                let text: String = inner
                    .iter()
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                        _ => None,
                    })
                    .collect();
                let Tag::Heading { classes, attrs, .. } = tag else {
                    unreachable!("only headings are held")
                };
                out.push(Event::Start(Tag::Heading {
                    level,
                    id: Some(CowStr::from(anchor(&text))),
                    classes,
                    attrs,
                }));
                out.extend(inner);
                out.push(Event::End(TagEnd::Heading(level)));
            }
            (event, Some((_, inner))) => inner.push(event),
            (event, None) => out.push(event),
        }
    }
    out
}

/// Every heading's anchor, in the order of the file.
pub fn anchors(markdown: &str) -> Vec<String> {
    events(markdown)
        .into_iter()
        .filter_map(|e| match e {
            Event::Start(Tag::Heading { id: Some(id), .. }) => Some(id.to_string()),
            _ => None,
        })
        .collect()
}

/// The runbooks as a whole HTML page.
pub fn html_page() -> String {
    let mut body = String::with_capacity(MARKDOWN.len() * 2);
    html::push_html(&mut body, events(MARKDOWN).into_iter());
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>omen runbooks</title>\n<style>body {{ max-width: 52rem; margin: 2rem auto; padding: 0 1rem; font-family: sans-serif; line-height: 1.5 }} code {{ background: #f3f3f3 }}</style></head>\n<body>\n{body}</body></html>\n"
    )
}

/// The `/runbooks` response.
pub fn page() -> Response<Body> {
    let mut response = Response::new(Body::from(html_page()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_the_repository_rendering() {
        assert_eq!(anchor("OmenAgentDown"), "omenagentdown");
        assert_eq!(anchor(" Agent health "), "agent-health");
        assert_eq!(
            anchor("Log templates (`omen agent patterns`)"),
            "log-templates-omen-agent-patterns"
        );
    }

    #[test]
    fn every_heading_of_the_page_has_its_anchor_as_id() {
        let page = html_page();
        let anchors = anchors(MARKDOWN);
        assert!(anchors.len() > 10, "{anchors:?}");
        for anchor in &anchors {
            assert!(page.contains(&format!(" id=\"{anchor}\"")), "{anchor}");
        }
        // Links between sections resolve to headings of the page.
        for link in page.split("href=\"#").skip(1) {
            let target = &link[..link.find('"').expect("closed")];
            assert!(anchors.iter().any(|a| a == target), "#{target}");
        }
    }
}
