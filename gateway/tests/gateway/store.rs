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
    // Retention by receive time.
    assert_eq!(s.prune(2005).unwrap(), 3);
    assert_eq!(s.sample_count().unwrap(), 6);
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
