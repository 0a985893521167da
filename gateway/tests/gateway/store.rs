//! The embedded store: what goes in comes out, by series and time.

use gateway::ingest::ingest;
use gateway::registry::Registry;
use gateway::store::{SeriesQuery, Store};

#[test]
fn samples_round_trip_by_series_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    for (i, t) in [1000i64, 2000, 3000].iter().enumerate() {
        let p = format!(
            r#"{{"v":1,"seq":{i},"ts":{t},"m":{{"leakage_ma":{i}.5,"smoke":false}},"ports":[{{"port":4,"temp_c":4{i}}}]}}"#
        );
        let inc = ingest("fm/v1/lakeside/charger/BAY-07/data", p.as_bytes(), t + 5).unwrap();
        assert_eq!(s.insert(&inc).unwrap(), 3);
    }
    let q = |metric: &str, port, from, to| SeriesQuery {
        device: "BAY-07".into(),
        site: None,
        metric: metric.into(),
        port,
        from,
        to,
        limit: 100,
    };
    let pts = s.series(&q("leakage_ma", None, 0, i64::MAX)).unwrap();
    assert_eq!(
        pts.iter().map(|p| (p.ts, p.value)).collect::<Vec<_>>(),
        [(1000, 0.5), (2000, 1.5), (3000, 2.5)]
    );
    assert_eq!(pts[0].received, 1005);
    let pts = s.series(&q("temp_c", Some(4), 2000, 3000)).unwrap();
    assert_eq!(pts.iter().map(|p| p.value).collect::<Vec<_>>(), [41.0]);
    assert!(s.series(&q("temp_c", Some(5), 0, i64::MAX)).unwrap().is_empty());
    assert_eq!(s.series(&q("smoke", None, 0, i64::MAX)).unwrap()[0].value, 0.0);
    // Retention by device time.
    assert_eq!(s.prune(2000).unwrap(), 3);
    assert_eq!(s.sample_count().unwrap(), 6);
}

/// Samples land in the inbox and move to the indexed table at a
/// compaction; a reader sees each exactly once before, during (a rolled-back
/// transaction) and after, and across a reopen.
#[test]
fn the_inbox_is_read_with_the_indexed_table_and_compacted_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let put = |s: &mut Store, seq: i64, t: i64| {
        let p = format!(r#"{{"v":1,"seq":{seq},"ts":{t},"m":{{"network_pressure_mpa":0.{seq}}}}}"#);
        let inc = ingest("fm/v1/s/firepump/P-1/data", p.as_bytes(), t).unwrap();
        s.insert(&inc).unwrap();
    };
    let q = SeriesQuery {
        device: "P-1".into(),
        site: Some("s".into()),
        metric: "network_pressure_mpa".into(),
        port: None,
        from: 0,
        to: i64::MAX,
        limit: 100,
    };
    let ts = |s: &Store| s.series(&q).unwrap().iter().map(|p| p.ts).collect::<Vec<_>>();
    for i in 1..=3 {
        put(&mut s, i, i * 1000);
    }
    assert_eq!(s.inbox().unwrap().rows, 3);
    assert_eq!(s.inbox().unwrap().since, Some(1000));
    assert_eq!(ts(&s), [1000, 2000, 3000], "read from the inbox");
    assert_eq!(s.compact().unwrap(), 3);
    assert_eq!(s.inbox().unwrap().rows, 0);
    // Newer in the inbox, older in the table: one ordered answer, no duplicate.
    put(&mut s, 4, 4000);
    put(&mut s, 5, 500);
    assert_eq!(ts(&s), [500, 1000, 2000, 3000, 4000]);
    assert_eq!(s.sample_count().unwrap(), 5);
    let recent = s.recent("s", "P-1", 0, 2).unwrap();
    assert_eq!(
        recent.iter().map(|r| r.at).collect::<Vec<_>>(),
        [3000, 4000],
        "evidence: the newest by receipt, from both tables"
    );
    // A transaction that fails after compacting leaves the inbox as it was.
    let failed = s.transact_series(|tx, series| {
        gateway::store::compact_step(tx, series)?;
        gateway::store::compact_step(tx, series)?;
        Err::<(), _>(rusqlite::Error::InvalidQuery)
    });
    assert!(failed.is_err());
    assert_eq!(s.inbox().unwrap().rows, 2);
    assert_eq!(s.inbox().unwrap().cycle, None);
    assert_eq!(ts(&s), [500, 1000, 2000, 3000, 4000]);
    // A reopen finds what waits; retention covers both tables.
    drop(s);
    let mut s = Store::open(dir.path()).unwrap();
    assert_eq!(s.inbox().unwrap().rows, 2);
    assert_eq!(s.inbox().unwrap().since, Some(500));
    assert_eq!(
        s.prune(2500).unwrap(),
        3,
        "500 from the inbox, 1000 and 2000 from the table"
    );
    assert_eq!(s.inbox().unwrap().rows, 1);
    assert_eq!(ts(&s), [3000, 4000]);
}

/// A compaction moves a range of series per step; between steps (and
/// across a reopen) every sample is read exactly once, and samples that
/// arrive meanwhile wait for the next compaction.
#[test]
fn a_compaction_in_steps_never_shows_a_sample_twice_or_not_at_all() {
    use gateway::store::{SERIES_PER_STEP, compact_step};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let devices = usize::try_from(SERIES_PER_STEP).unwrap() + 88;
    let put = |s: &mut Store, d: usize, t: i64| {
        let p = format!(r#"{{"v":1,"seq":{t},"ts":{t},"m":{{"tank_level_m":{d}}}}}"#);
        s.insert(&ingest(&format!("fm/v1/s/firepump/P-{d}/data"), p.as_bytes(), t).unwrap())
            .unwrap();
    };
    for d in 0..devices {
        put(&mut s, d, 1000);
    }
    let seen = |s: &Store, d: usize| {
        s.series(&SeriesQuery {
            device: format!("P-{d}"),
            site: None,
            metric: "tank_level_m".into(),
            port: None,
            from: 0,
            to: i64::MAX,
            limit: 10,
        })
        .unwrap()
        .len()
    };
    let total = u64::try_from(devices).unwrap();
    // Step 1 starts the cycle; step 2 moves the first range of series.
    s.transact_series(compact_step).unwrap();
    assert_eq!(s.transact_series(compact_step).unwrap(), 511);
    assert!(s.inbox().unwrap().cycle.is_some());
    put(&mut s, 0, 2000);
    put(&mut s, devices - 1, 2000);
    for d in [0, 1, 510, 511, 512, devices - 1] {
        let want = if d == 0 || d == devices - 1 { 2 } else { 1 };
        assert_eq!(seen(&s, d), want, "device {d} mid-compaction");
    }
    assert_eq!(s.sample_count().unwrap(), total + 2);
    assert_eq!(s.recent("s", "P-0", 0, 10).unwrap().len(), 2);
    // A reopen mid-compaction picks the cycle up where it was.
    drop(s);
    let mut s = Store::open(dir.path()).unwrap();
    assert!(s.inbox().unwrap().cycle.is_some());
    assert_eq!(s.sample_count().unwrap(), total + 2);
    assert_eq!(s.transact_series(compact_step).unwrap(), 89);
    assert_eq!(s.inbox().unwrap().cycle, None);
    assert_eq!(
        s.inbox().unwrap().rows,
        2,
        "the two late samples wait for the next compaction"
    );
    assert_eq!(s.sample_count().unwrap(), total + 2);
    for d in [0, 1, 511, 512, devices - 1] {
        let want = if d == 0 || d == devices - 1 { 2 } else { 1 };
        assert_eq!(seen(&s, d), want, "device {d} after");
    }
    assert_eq!(s.compact().unwrap(), 2);
    assert_eq!(s.inbox().unwrap().rows, 0);
    assert_eq!(s.sample_count().unwrap(), total + 2);
}

#[test]
fn the_registry_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Registry::new();
    r.observe(
        &ingest(
            "fm/v1/s/firepump/P-1/birth",
            br#"{"v":1,"seq":0,"ts":0,"bdseq":4,"fw":"2","model":"m","cfg":"c","interval_s":5}"#,
            9,
        )
        .unwrap(),
    );
    {
        let mut s = Store::open(dir.path()).unwrap();
        for d in r.iter() {
            s.save_device(d).unwrap();
        }
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(Registry::restore(s.load_devices().unwrap()), r);
}

/// A data directory written before samples were split into `series` and
/// `points` is moved over at the first open, every sample kept.
#[test]
fn samples_of_the_old_wide_table_are_moved_over() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("gateway.sqlite")).unwrap();
        c.execute_batch(
            "CREATE TABLE samples (site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                 metric TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0, ts INTEGER NOT NULL,
                 received INTEGER NOT NULL, value REAL NOT NULL, hist INTEGER NOT NULL);
             INSERT INTO samples VALUES ('s', 'charger', 'B-1', 'temp_c', 2, 1000, 1001, 41.5, 0);
             INSERT INTO samples VALUES ('s', 'charger', 'B-1', 'temp_c', 2, 2000, 2001, 42.5, 0);
             INSERT INTO samples VALUES ('s', 'charger', 'B-1', 'smoke', 0, 2000, 2001, 0, 0);",
        )
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.sample_count().unwrap(), 3);
    let points = s
        .series(&SeriesQuery {
            site: None,
            device: "B-1".into(),
            metric: "temp_c".into(),
            port: Some(2),
            from: 0,
            to: i64::MAX,
            limit: 10,
        })
        .unwrap();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    assert_eq!(values, [41.5, 42.5]);
    drop(s);
    // Opened again: nothing moved twice.
    assert_eq!(Store::open(dir.path()).unwrap().sample_count().unwrap(), 3);
}

/// A data directory whose `points` were a rowid table with two indexes is
/// moved into the one-B-tree layout at the first open; a new sample at the
/// same series and time as a moved one is kept beside it, not refused.
#[test]
fn points_of_the_rowid_layout_are_moved_over() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("gateway.sqlite")).unwrap();
        c.execute_batch(
            "CREATE TABLE series (
                 id INTEGER PRIMARY KEY, site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                 metric TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0,
                 UNIQUE (site, class, device, metric, port));
             CREATE TABLE points (series INTEGER NOT NULL, ts INTEGER NOT NULL, received INTEGER NOT NULL,
                 value REAL NOT NULL, hist INTEGER NOT NULL);
             CREATE INDEX points_series ON points (series, ts);
             CREATE INDEX points_received ON points (received);
             INSERT INTO series VALUES (1, 's', 'firepump', 'P-1', 'network_pressure_mpa', 0);
             INSERT INTO points VALUES (1, 2000, 2001, 0.25, 0);
             INSERT INTO points VALUES (1, 1000, 1001, 0.35, 0);",
        )
        .unwrap();
    }
    let mut s = Store::open(dir.path()).unwrap();
    let q = SeriesQuery {
        site: None,
        device: "P-1".into(),
        metric: "network_pressure_mpa".into(),
        port: None,
        from: 0,
        to: i64::MAX,
        limit: 10,
    };
    let values = |s: &Store| s.series(&q).unwrap().iter().map(|p| p.value).collect::<Vec<_>>();
    assert_eq!(values(&s), [0.35, 0.25]);
    let inc = ingest(
        "fm/v1/s/firepump/P-1/data",
        br#"{"v":1,"seq":9,"ts":2000,"m":{"network_pressure_mpa":0.15}}"#,
        3000,
    )
    .unwrap();
    s.insert(&inc).unwrap();
    s.compact().unwrap();
    assert_eq!(values(&s), [0.35, 0.25, 0.15]);
    drop(s);
    assert_eq!(Store::open(dir.path()).unwrap().sample_count().unwrap(), 3);
}

/// The desk's state is kept row by row, and a change writes only its own
/// rows (the move from the one-document layout is schema step 9:
/// `gateway/tests/gateway/migrations.rs`).
#[test]
fn the_desk_state_moves_from_one_document_to_rows() {
    use dispatch::{DeskState, DutyState, StateChanges};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let mut old = DeskState {
        next_id: 12,
        ..DeskState::default()
    };
    old.dispatched.insert(7, 1_000);
    old.duties.insert(
        "lakeside/FP-1/self_test".into(),
        DutyState {
            site: "lakeside".into(),
            class: "firepump".into(),
            device: "FP-1".into(),
            duty: "self_test".into(),
            due: 99,
            last_done: None,
            order: Some(11),
        },
    );
    let all = StateChanges {
        duties: old.duties.keys().cloned().collect(),
        dispatched: old.dispatched.keys().copied().collect(),
        next_id: true,
    };
    s.transact(|tx| gateway::ops::workorders::save(tx, 0, &[], &old, &all))
        .unwrap();
    let (state, open) = gateway::ops::workorders::load(s.conn()).unwrap();
    assert_eq!(state, old);
    assert!(open.is_empty());

    // One alert forgotten, one remembered, one duty gone: those rows only.
    let mut now = old.clone();
    now.dispatched.remove(&7);
    now.dispatched.insert(8, 2_000);
    now.duties.clear();
    let changes = StateChanges {
        duties: ["lakeside/FP-1/self_test".to_owned()].into(),
        dispatched: [7, 8].into(),
        next_id: false,
    };
    s.transact(|tx| gateway::ops::workorders::save(tx, 0, &[], &now, &changes))
        .unwrap();
    let (state, _) = gateway::ops::workorders::load(s.conn()).unwrap();
    assert_eq!(state, now);
}

/// The data directory the store creates is the gateway user's alone.
#[test]
fn the_data_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a").join("data");
    drop(Store::open(&data).unwrap());
    for d in [dir.path().join("a"), data] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}
