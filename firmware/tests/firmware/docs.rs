//! `docs/firmware.md` names every threshold a `set_threshold` command can change.

#[test]
fn every_threshold_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/firmware.md")).unwrap();
    let names = firmware::elevator::THRESHOLDS
        .iter()
        .map(|t| t.name)
        .chain(firmware::firepump::THRESHOLDS.iter().map(|t| t.name))
        .chain(firmware::charger::THRESHOLDS.iter().map(|t| t.name));
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/firmware.md does not mention `{name}`"
        );
    }
}
