//! Any text as the configuration file (`gateway::app::config::Config::parse`):
//! nothing panics, and every error names the file, with a line and column
//! that are in the text when it gives them.
#![no_main]

use std::path::Path;

use gateway::app::config::Config;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/etc/fm/gateway.toml";

fuzz_target!(|text: &str| {
    let path = Path::new(FILE);
    let Err(e) = Config::parse(path, text) else { return };
    assert_eq!(e.file, path, "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with(FILE), "the error does not name the file: {shown}");
    assert!(!e.message.trim().is_empty(), "an error without a message: {shown}");
    let lines: Vec<&str> = text.split('\n').collect();
    if let Some(line) = e.line {
        assert!(
            (1..=lines.len()).contains(&line),
            "line {line} of {} lines: {shown}",
            lines.len()
        );
        if let Some(column) = e.column {
            let width = lines[line - 1].chars().count().max(lines[line - 1].len());
            assert!(
                (1..=width + 1).contains(&column),
                "column {column} of a line of {width}: {shown}"
            );
        }
    } else {
        assert!(e.column.is_none(), "a column without a line: {shown}");
    }
});
