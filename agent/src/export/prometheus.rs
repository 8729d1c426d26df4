//! Prometheus pull: picks the exposition format by content negotiation (OpenMetrics when
//! the scraper asks for it, as Prometheus does, else text format 0.0.4).
//!
//! The text itself is written by `omen_common::exposition`, through `Registry::render`.

use crate::registry::{Format, Registry};

/// The format a scraper's `Accept` header asks for.
pub fn negotiate(accept: Option<&str>) -> Format {
    match accept {
        Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
        _ => Format::Prometheus,
    }
}

/// Renders every active family (rules' and the agent's own).
pub fn render(registry: &Registry, format: Format) -> String {
    registry.render(format, |_| true)
}

/// Appends `more`'s families to an exposition rendered in `format` (one `# EOF`, last).
pub fn render_after(mut text: String, more: &Registry, format: Format) -> String {
    if format == Format::OpenMetrics && text.ends_with("# EOF\n") {
        text.truncate(text.len() - "# EOF\n".len());
    }
    text.push_str(&more.render(format, |_| true));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_prometheus() {
        let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus_accept)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(negotiate(None), Format::Prometheus);
    }
}
