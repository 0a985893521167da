//! Where the gateway's logs go and how they look: standard error, filtered
//! by `RUST_LOG` (default `info`), as text or as JSON lines.
//!
//! Colour only where a person reads a terminal: escape codes in a file, a
//! pipe or journald are noise a reader has to strip (and journald stores
//! them as binary blobs). `NO_COLOR` (<https://no-color.org>) turns colour
//! off on a terminal too. JSON is for log collectors (Loki, Elasticsearch,
//! `journalctl -o cat | jq`): one object per line with `timestamp`, `level`,
//! `target` and the event's `fields`.

use std::io::IsTerminal as _;

/// `--log-format`: `text` (default) or `json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether text logs are coloured: stderr is a terminal and `NO_COLOR` is
/// unset or empty (the convention: any non-empty value turns colour off).
#[must_use]
pub fn colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            builder
                .with_ansi(colour(std::io::stderr().is_terminal(), no_color.as_deref()))
                .init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("")), "an empty NO_COLOR is unset (no-color.org)");
        assert!(!colour(true, Some("1")));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1")));
    }
}
