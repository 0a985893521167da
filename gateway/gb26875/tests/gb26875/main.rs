//! The codec's one integration-test binary: golden frames built by hand
//! from the standard's layout (both directions), the session on a manual
//! clock, and properties (round trips, never a panic, resynchronisation).

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod golden;
mod props;
mod session;

/// Hex with spaces and line breaks (one field a line in the vectors) to bytes.
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {digits}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}
