//! The store's schema steps (`gateway::store::schema`), from the first
//! layout the gateway ever wrote: every older store in
//! `tests/fixtures/store/` (one per layout, its CREATE statements recovered
//! from the commit that made it, with rows in the shapes that commit wrote)
//! is opened by today's code, and every row must read back with its meaning.

use std::collections::BTreeMap;
use std::path::Path;

use gateway::ingest::ingest;
use gateway::store::schema::{self, STEPS, SchemaError, Step, VERSION};
use gateway::store::{AlertQuery, SeriesQuery, Store, StoreError};
use rusqlite::Connection;

/// The fixtures' time base (2025-11-22T08:00:00Z).
const T: i64 = 1_763_798_400_000;
/// The public key of the fixtures' checkpoints.
const FIXTURE_KEY: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";

/// Every fixture: its layout's step and file.
fn fixtures() -> Vec<(u32, std::path::PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let v = name[1..name.find('-').unwrap()].parse().unwrap();
            (v, p)
        })
        .collect();
    out.sort();
    out
}

/// A data directory holding the store of a fixture.
fn data_dir(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(dir.path().join("gateway.sqlite")).unwrap();
    c.execute_batch(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    dir
}

fn version(dir: &Path) -> u32 {
    schema::version(&Connection::open(dir.join("gateway.sqlite")).unwrap()).unwrap()
}

fn has_table(c: &Connection, name: &str) -> bool {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

/// The tables and indexes as SQLite describes them (columns, types,
/// keys, WITHOUT ROWID, index columns), not as their CREATE text was spelled.
fn shape(c: &Connection) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let tables: Vec<(String, i64)> = c
        .prepare("SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (table, without_rowid) in tables {
        let cols: Vec<String> = c
            .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid")
            .unwrap()
            .query_map([&table], |r| {
                Ok(format!(
                    "{} {} nn={} d={:?} pk={}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let indexes: Vec<String> = c
            .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1) ORDER BY name")
            .unwrap()
            .query_map([&table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .map(|(name, unique, origin)| {
                let cols: Vec<String> = c
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .unwrap()
                    .query_map([&name], |r| r.get::<_, Option<String>>(0))
                    .unwrap()
                    .map(|n| n.unwrap().unwrap_or_default())
                    .collect();
                // Automatic indexes are named by position: compare what they index.
                let name = if origin == "c" { name } else { origin };
                format!("{name} unique={unique} ({})", cols.join(", "))
            })
            .collect();
        out.insert(
            table,
            format!("wr={without_rowid} [{}] {{{}}}", cols.join("; "), indexes.join("; ")),
        );
    }
    out
}

fn series(s: &Store, device: &str, metric: &str, port: Option<u8>) -> Vec<(i64, f64, bool)> {
    s.series(&SeriesQuery {
        device: device.into(),
        site: Some("lakeside".into()),
        metric: metric.into(),
        port,
        from: 0,
        to: i64::MAX,
        limit: 100,
    })
    .unwrap()
    .iter()
    .map(|p| (p.ts, p.value, p.hist))
    .collect()
}

/// What every fixture of layout `v` holds, read through today's readers.
fn check_rows(dir: &Path, v: u32) {
    let s = Store::open(dir).unwrap();
    let c = s.conn();

    // Samples: every one, in device-time order, the replay marked, two at one
    // device time both kept.
    assert_eq!(s.sample_count().unwrap(), 6, "v{v}: samples");
    assert_eq!(
        series(&s, "PUMP-B2", "network_pressure_mpa", None),
        [
            (T - 300_000, 0.30, true),
            (T - 120_000, 0.28, false),
            (T - 60_000, 0.27, false)
        ],
        "v{v}"
    );
    assert_eq!(
        series(&s, "BAY-07", "temp_c", Some(4)),
        [(T - 30_000, 41.0, false), (T - 30_000, 41.5, false)],
        "v{v}"
    );
    assert_eq!(series(&s, "BAY-07", "smoke", None), [(T - 30_000, 0.0, false)], "v{v}");

    // The registry.
    let devices = s.load_devices().unwrap();
    let pump = devices.iter().find(|d| d.key.device == "PUMP-B2").unwrap();
    assert_eq!(devices.len(), 2, "v{v}");
    assert_eq!(
        (pump.fw.as_deref(), pump.last_seq, pump.bdseq, pump.lost),
        (Some("1.4.2"), Some(41), Some(3), 2)
    );

    if v >= 2 {
        let (topic, payload): (String, Vec<u8>) = c
            .query_row("SELECT topic, payload FROM rejected", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (topic.as_str(), &payload[..]),
            ("fm/v1/lakeside/charger/BAY-07/data", &b"not json"[..])
        );
    }
    if v >= 3 {
        let alerts = s
            .alerts(&AlertQuery {
                limit: 10,
                ..AlertQuery::default()
            })
            .unwrap();
        let by_id: BTreeMap<u64, _> = alerts.iter().map(|(_, a)| (a.id, a)).collect();
        assert_eq!(by_id.len(), 2, "v{v}: alerts");
        assert_eq!(
            (by_id[&1].code.as_str(), by_id[&1].state.as_str()),
            ("low_pressure", "resolved")
        );
        assert_eq!(by_id[&1].acked_by.as_deref(), Some("admin"));
        assert_eq!(by_id[&1].evidence[0].value, 0.12);
        assert_eq!(
            (
                by_id[&2].code.as_str(),
                by_id[&2].severity.as_str(),
                by_id[&2].state.as_str()
            ),
            ("smoke", "critical", "firing")
        );
        let firing = s
            .alerts(&AlertQuery {
                state: Some("firing".into()),
                limit: 10,
                ..AlertQuery::default()
            })
            .unwrap();
        assert_eq!(firing.iter().map(|(_, a)| a.id).collect::<Vec<_>>(), [2]);
        assert_eq!(s.load_engine().unwrap().globals.next_episode, 3);
    }
    if v == 3 {
        // The alert log of 586381d..27c863b is history: kept, rows and all.
        let n: i64 = c.query_row("SELECT COUNT(*) FROM alert_log", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }
    if v >= 4 {
        let verified = gateway::ops::supervision::verify(c, Some(FIXTURE_KEY)).unwrap();
        assert!(verified.ok, "v{v}: chain {verified:?}");
        assert_eq!((verified.count, verified.checkpoints), (3, 1), "v{v}");

        let (desk, open) = gateway::ops::workorders::load(c).unwrap();
        assert_eq!(desk.next_id, 2, "v{v}: the desk");
        assert_eq!(desk.dispatched.get(&2), Some(&(T - 29_000)));
        let duty = &desk.duties["lakeside/PUMP-B2/self_test"];
        assert_eq!((duty.due, duty.last_done), (T + 604_800_000, Some(T - 86_400_000)));
        assert_eq!(open.iter().map(|o| o.id).collect::<Vec<_>>(), [1], "v{v}: open orders");
        assert_eq!(open[0].contractor.as_deref(), Some("acme-fire"));
        let closed = gateway::ops::workorders::get(c, 0).unwrap().unwrap();
        assert_eq!(closed.status.as_str(), "false_alarm");
        assert_eq!(closed.steps[1].note.as_deref(), Some("水汽，非烟雾"));
        assert!(!has_table(c, "desk_state"), "v{v}: the desk's document moved into rows");
    }
    if v >= 5 {
        let outbox = gateway::ops::workorders::load_outbox(c).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            (outbox[0].to.as_str(), outbox[0].msg.id.as_str()),
            ("acme-fire", "order-1-dispatched")
        );
    }
    if v >= 8 {
        let cred = gateway::store::credentials::get(c, "lakeside", "PUMP-B2")
            .unwrap()
            .unwrap();
        assert!(cred.password_hash.starts_with("$argon2id$"));
        assert_eq!(cred.cmd_key[0], 32);
        assert_eq!(cred.revoked, None);
    }
    if v >= 10 {
        let acked = gateway::ops::commands::get(c, "5b1f0c2e9d8a47f6b3c2a1e0f9d8c7b6")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                acked.op.as_str(),
                acked.args.port,
                acked.status.as_str(),
                acked.by.as_str()
            ),
            ("cut_off", Some(4), "acked", "zhang")
        );
        let restored = gateway::ops::commands::load(c).unwrap();
        assert_eq!(
            restored.counters[&("lakeside".to_owned(), "PUMP-B2".to_owned())],
            1_763_798_399_000
        );
        assert_eq!(restored.pending.len(), 1, "v{v}: the command still waiting");
        assert_eq!(restored.state["self_test"], r#"{"last":1763798399000}"#);
    }
    if v >= 11 {
        let rows = gateway::upstream::outbox::load(c, "fire_centre", 0, 10).unwrap();
        assert_eq!(rows.len(), 1, "v{v}: the row waiting upstream");
        assert_eq!(
            (
                rows[0].id,
                rows[0].entry.key.as_str(),
                rows[0].attempts,
                rows[0].next_try
            ),
            (3, "alert:41:fired", 2, 1_763_798_460_000)
        );
        assert_eq!(rows[0].entry.payload["code"], "low_pressure");
    }
    // Every store, old or new, starts the judgement from history empty.
    assert!(gateway::ops::judgement::load(c).unwrap().is_empty(), "v{v}");
}

/// Every older layout opens at the newest version with every row, its
/// tables shaped as a new store's, and takes new samples after the old.
#[test]
fn every_older_store_opens_with_every_row() {
    let fresh = tempfile::tempdir().unwrap();
    let fresh_shape = shape(Store::open(fresh.path()).unwrap().conn());
    let all = fixtures();
    assert_eq!(
        all.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..VERSION).collect::<Vec<_>>(),
        "a fixture for every layout before the newest"
    );
    for (v, fixture) in all {
        let dir = data_dir(&fixture);
        assert_eq!(version(dir.path()), 0, "written before versions");
        check_rows(dir.path(), v);
        assert_eq!(version(dir.path()), VERSION);
        let mut s = Store::open(dir.path()).unwrap();
        let mut migrated = shape(s.conn());
        migrated.remove("alert_log");
        assert_eq!(migrated, fresh_shape, "v{v}: tables as a new store makes them");

        // New samples go after the old: a new sample at the same series
        // and device time as an old one is kept beside it.
        let inc = ingest(
            "fm/v1/lakeside/charger/BAY-07/data",
            format!(
                r#"{{"v":1,"seq":978,"ts":{},"m":{{"leakage_ma":3.5}},"ports":[{{"port":4,"temp_c":42.5}}]}}"#,
                T - 30_000
            )
            .as_bytes(),
            T,
        )
        .unwrap();
        s.insert(&inc).unwrap();
        s.compact().unwrap();
        s.compact().unwrap();
        assert_eq!(
            series(&s, "BAY-07", "temp_c", Some(4)),
            [
                (T - 30_000, 41.0, false),
                (T - 30_000, 41.5, false),
                (T - 30_000, 42.5, false)
            ],
            "v{v}"
        );
        assert_eq!(s.sample_count().unwrap(), 8);
    }
}

/// Every row of every table, for comparing a store before and after.
fn contents(dir: &Path) -> (u32, BTreeMap<String, Vec<String>>) {
    let c = Connection::open(dir.join("gateway.sqlite")).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.insert(t, rows);
    }
    (schema::version(&c).unwrap(), out)
}

/// Opening a migrated store again runs no step and changes nothing.
#[test]
fn migrating_twice_changes_nothing() {
    for (_, fixture) in fixtures() {
        let dir = data_dir(&fixture);
        drop(Store::open(dir.path()).unwrap());
        let once = contents(dir.path());
        assert_eq!(once.0, VERSION);
        drop(Store::open(dir.path()).unwrap());
        let mut c = Connection::open(dir.path().join("gateway.sqlite")).unwrap();
        assert_eq!(schema::migrate(&mut c).unwrap(), VERSION, "already at the newest");
        drop(c);
        assert_eq!(contents(dir.path()), once);
    }
}

/// A step that fails halfway (as a kill would leave it) is rolled back
/// whole: the store stays at the last whole step, its rows as they were;
/// the next open runs the rest.
#[test]
fn a_step_failing_halfway_leaves_the_last_whole_version_and_the_next_open_completes_it() {
    let (v, fixture) = fixtures().into_iter().find(|(v, _)| *v == 4).unwrap();
    let dir = data_dir(&fixture);
    let mut steps: Vec<Step> = STEPS.to_vec();
    // Step 7 does all of its work, then fails before its commit.
    steps[6].run = |tx| {
        (STEPS[6].run)(tx)?;
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some("killed".into()),
        ))
    };
    let mut c = Connection::open(dir.path().join("gateway.sqlite")).unwrap();
    let e = schema::migrate_with(&mut c, &steps).unwrap_err();
    assert!(
        matches!(
            e,
            SchemaError::Step {
                version: 7,
                stays: 6,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(schema::version(&c).unwrap(), 6);
    assert!(!has_table(&c, "samples"), "step 6 is whole");
    assert!(
        !has_table(&c, "inbox") && !has_table(&c, "points_v1"),
        "nothing of step 7"
    );
    let rows: i64 = c.query_row("SELECT COUNT(*) FROM points", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 6);
    let rowid_points: bool = c
        .query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM pragma_table_info('points') WHERE name = 'n')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(rowid_points, "points as step 6 left them");
    drop(c);
    check_rows(dir.path(), v);
    assert_eq!(version(dir.path()), VERSION);
}

/// A store a newer gateway wrote is refused with a sentence saying so, and
/// left as it was.
#[test]
fn a_store_from_a_newer_gateway_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let newer = VERSION + 1;
    Connection::open(dir.path().join("gateway.sqlite"))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let before = contents(dir.path());
    let Err(e) = Store::open(dir.path()) else {
        panic!("opened a store of version {newer}");
    };
    assert!(
        matches!(e, StoreError::Schema { source: SchemaError::TooNew { found, known }, .. } if found == newer && known == VERSION)
    );
    let said = e.to_string();
    assert!(
        said.contains("newer gateway") && said.contains(&newer.to_string()),
        "{said}"
    );
    assert_eq!(contents(dir.path()), before);
}

/// A new store is made by the same steps, and is at the newest version.
#[test]
fn a_new_store_runs_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(schema::version(s.conn()).unwrap(), VERSION);
    assert_eq!(
        STEPS.iter().map(|s| s.version).collect::<Vec<_>>(),
        (1..=VERSION).collect::<Vec<_>>(),
        "numbered 1, 2, 3, ... in order"
    );
    for gone in ["samples", "desk_state", "points_v1", "alert_log"] {
        assert!(!has_table(s.conn(), gone), "{gone}");
    }
}

/// Connections opening an old store at once (the API opens one per
/// request) run each step once between them.
#[test]
fn stores_opened_at_once_migrate_once() {
    let (_, fixture) = fixtures().into_iter().next().unwrap();
    let dir = data_dir(&fixture);
    let path = dir.path().to_owned();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).map(|s| s.sample_count().unwrap()))
        })
        .collect();
    for o in openers {
        assert_eq!(o.join().unwrap().unwrap(), 6);
    }
    check_rows(&path, 1);
}
