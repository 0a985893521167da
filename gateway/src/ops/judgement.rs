//! The edge of the pure `judgement` crate: the pipeline feeds it live
//! samples, the work orders the desk opens and closes, and time; its
//! verdicts (`frequent_faults`, `degrading`) become sources of alerts in
//! the alerting engine ([`alerting::Engine::history`]), so they are
//! notified, dispatched (one order per device and code: one inspection
//! order, never one per fault), recorded and acknowledged like every other
//! alert. Its state is stored per device in `judgement_devices`, in the
//! same transaction as the step that changed it (store schema step 12).
//! docs/judgement.md.

use std::time::{Duration, Instant};

use judgement::{DeviceState, Judge, Verdict};
use rusqlite::{Connection, Transaction, params};

use crate::ingest::Incoming;

/// How often the gatherings that only samples moved are stored: a kill
/// loses at most this much of a bucket's counts (never a verdict, a fault
/// or a closed bucket: those go with their step).
pub(crate) const SAVE_EVERY: Duration = Duration::from_mins(5);

/// The judge and what it has to say to the engine.
pub struct Judgement {
    judge: Judge,
    verdicts: Vec<Verdict>,
    saved: Instant,
}

impl Judgement {
    /// The judge with its stored state.
    ///
    /// # Errors
    /// The store's, or a stored state that does not read.
    pub fn load(conn: &Connection, settings: judgement::Settings) -> anyhow::Result<Judgement> {
        let mut judge = Judge::new(settings);
        judge.restore(load(conn)?);
        Ok(Judgement {
            judge,
            verdicts: Vec::new(),
            saved: Instant::now(),
        })
    }

    /// The judge.
    #[must_use]
    pub fn judge(&self) -> &Judge {
        &self.judge
    }

    /// A live sample (replays are left out: when they happened is only
    /// the node's word, and judgement runs on the gateway's clock).
    pub(crate) fn sample(
        &mut self,
        engine: &mut alerting::Engine,
        clock: i64,
        incoming: &Incoming,
        effects: &mut Vec<alerting::Effect>,
    ) {
        let protocol::Message::Data(data) = &incoming.message else {
            return;
        };
        if data.hist {
            return;
        }
        let readings: Vec<(&str, u8, f64)> = crate::store::values(data)
            .map(|(m, p, v)| (m, p, v.to_number()))
            .collect();
        let t = &incoming.topic;
        let now = clock.max(incoming.received_ms);
        self.judge.sample(
            now,
            t.site.as_str(),
            t.class.as_str(),
            t.device.as_str(),
            &readings,
            &mut self.verdicts,
        );
        self.apply(engine, now, effects);
    }

    /// The desk's changes: an order opened or joined is a fault of its
    /// device; one closed as a false alarm was none.
    pub(crate) fn outs(
        &mut self,
        engine: &mut alerting::Engine,
        clock: i64,
        outs: &[dispatch::Out],
        effects: &mut Vec<alerting::Effect>,
    ) {
        for o in outs {
            let dispatch::Out::Order { change, order } = o else {
                continue;
            };
            if order.kind != dispatch::order::Kind::Corrective {
                continue;
            }
            let (site, class, device) = (&order.site, &order.class, &order.device);
            match change {
                dispatch::OrderChange::Dispatched | dispatch::OrderChange::Joined { .. } => {
                    let alert = match change {
                        dispatch::OrderChange::Joined { alert } => *alert,
                        _ => order.alerts.first().copied().unwrap_or(0),
                    };
                    let fault = judgement::Fault {
                        alert,
                        order: order.id,
                        code: order.code.clone(),
                        at: clock,
                        contractor: order.contractor.clone(),
                    };
                    self.judge.fault(clock, site, class, device, fault, &mut self.verdicts);
                }
                dispatch::OrderChange::Stepped {
                    status: dispatch::order::Status::FalseAlarm,
                } => self
                    .judge
                    .false_alarm(clock, site, class, device, order.id, &mut self.verdicts),
                _ => {}
            }
        }
        self.apply(engine, clock, effects);
    }

    /// Time passes: ended buckets close, faults slide out of their window.
    pub(crate) fn tick(&mut self, engine: &mut alerting::Engine, clock: i64, effects: &mut Vec<alerting::Effect>) {
        self.judge.tick(clock, &mut self.verdicts);
        self.apply(engine, clock, effects);
    }

    fn apply(&mut self, engine: &mut alerting::Engine, clock: i64, effects: &mut Vec<alerting::Effect>) {
        for v in self.verdicts.drain(..) {
            let Some(class) = protocol::DeviceClass::from_name(&v.class) else {
                continue;
            };
            let severity = match v.severity {
                judgement::Severity::Major => protocol::Severity::Major,
                judgement::Severity::Minor => protocol::Severity::Minor,
            };
            let evidence = v
                .evidence
                .into_iter()
                .map(|e| alerting::effect::Evidence {
                    metric: e.metric,
                    port: e.port,
                    value: e.value,
                    at: e.at,
                    text: e.text,
                })
                .collect();
            tracing::info!(site = %v.site, device = %v.device, code = v.code, active = v.active, "judgement from history");
            engine.history(
                clock,
                alerting::DeviceRef {
                    site: &v.site,
                    class,
                    device: &v.device,
                },
                v.code,
                severity,
                v.active,
                evidence,
                effects,
            );
        }
    }

    /// The states to store with this commit: what a step changed, and
    /// every touched one when [`SAVE_EVERY`] has passed or `all` (shutdown).
    pub(crate) fn take_changed(&mut self, all: bool) -> Vec<DeviceState> {
        let all = all || self.saved.elapsed() >= SAVE_EVERY;
        if all {
            self.saved = Instant::now();
        }
        self.judge.take_changed(all)
    }
}

/// Every stored device state.
///
/// # Errors
/// The store's, or a state that does not read.
pub fn load(conn: &Connection) -> anyhow::Result<Vec<DeviceState>> {
    let mut stmt = conn.prepare("SELECT state FROM judgement_devices ORDER BY site, class, device")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for text in rows {
        out.push(serde_json::from_str(&text?)?);
    }
    Ok(out)
}

/// Stores device states inside the caller's transaction.
///
/// # Errors
/// SQLite's.
pub fn save(tx: &Transaction<'_>, now: i64, states: &[DeviceState]) -> rusqlite::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO judgement_devices (site, class, device, state, saved) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (site, class, device) DO UPDATE SET state = excluded.state, saved = excluded.saved",
    )?;
    for s in states {
        let text = serde_json::to_string(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.execute(params![s.site, s.class, s.device, text, now])?;
    }
    Ok(())
}
