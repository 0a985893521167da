//! The work-order core's edge (智慧派单): where orders live in SQLite, the
//! evidence read for a new order, the records of order changes, and the
//! deliveries of what the desk says somebody must be told.
//!
//! The desk itself (`dispatch`) is pure: it is fed and answers. Here its
//! answers meet the store, the record chain and the notification channels.

use std::collections::HashMap;

use dispatch::{DeskState, Order, Out, StateChanges, Tell};
use notify::{Contact, Delivery, Message, Outbox};
use records::NewRecord;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::metrics::Metrics;

/// A delivery kept in the store's `outbox` table from the commit that
/// decided it until its last outcome, so a dispatch queued before a kill is
/// sent after the restart (at least once: a receiver drops a repeat by the
/// message id). The contact is kept by id, never with its secrets, and is
/// looked up in the configuration when the delivery is sent.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Queued {
    /// The contact id.
    pub to: String,
    /// The message.
    pub msg: Message,
    /// The subject of its records (`order:7`, `notification`).
    pub subject: String,
    /// When it was decided (ms).
    pub at: i64,
    /// What an earlier run reached of it before shutdown cut it off
    /// (channels, and SMS numbers as `sms:…`): not sent those again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reached: Vec<String>,
}

/// Adds deliveries to the outbox table and forgets finished ones, in the
/// caller's transaction.
///
/// # Errors
/// SQLite's, or a delivery that does not encode.
pub fn save_outbox(tx: &Transaction<'_>, put: &[Queued], done: &[String]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached("INSERT OR REPLACE INTO outbox (id, at, queued) VALUES (?1, ?2, ?3)")?;
    for q in put {
        let text = serde_json::to_string(q).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(params![q.msg.id, q.at, text])?;
    }
    let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in done {
        delete.execute(params![id])?;
    }
    Ok(())
}

/// The deliveries left in the outbox table, oldest first.
///
/// # Errors
/// SQLite's, or a row that does not parse.
pub fn load_outbox(conn: &Connection) -> rusqlite::Result<Vec<Queued>> {
    let mut stmt = conn.prepare("SELECT queued FROM outbox ORDER BY at, id")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|r| r.and_then(|t| parse(&t))).collect()
}

/// How far before its trigger an order's evidence reaches.
pub const EVIDENCE_BEFORE_MS: i64 = 120_000;
/// Most samples of evidence one order carries.
pub const EVIDENCE_SAMPLES: usize = 400;

/// Upserts orders and the desk state, in the caller's transaction.
///
/// # Errors
/// SQLite's, or an order that does not encode.
pub fn save(
    tx: &Transaction<'_>,
    now: i64,
    orders: &[Order],
    desk: &DeskState,
    changes: &StateChanges,
) -> rusqlite::Result<()> {
    let enc = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let mut stmt = tx.prepare_cached(
        "INSERT INTO work_orders (id, kind, site, class, device, code, status, contractor, primary_contractor,
                                  created, due, changed, view)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, contractor = excluded.contractor,
           changed = excluded.changed, view = excluded.view",
    )?;
    for o in orders {
        let kind = match o.kind {
            dispatch::Kind::Corrective => "corrective",
            dispatch::Kind::Preventive => "preventive",
        };
        stmt.execute(params![
            i64::try_from(o.id).unwrap_or(i64::MAX),
            kind,
            o.site,
            o.class,
            o.device,
            o.code,
            o.status.as_str(),
            o.contractor,
            o.primary,
            o.created_at,
            o.deadlines.complete,
            now,
            serde_json::to_string(o).map_err(enc)?
        ])?;
    }
    save_state(tx, desk, changes)
}

/// Writes the rows of the desk's state that `changes` names: a duty or a
/// remembered alert as it is now, or its deletion if it is gone.
fn save_state(tx: &Transaction<'_>, desk: &DeskState, changes: &StateChanges) -> rusqlite::Result<()> {
    let enc = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    if changes.next_id {
        tx.prepare_cached(
            "INSERT INTO desk_meta (id, next_id) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET next_id = excluded.next_id",
        )?
        .execute(params![i64::try_from(desk.next_id).unwrap_or(i64::MAX)])?;
    }
    for key in &changes.duties {
        match desk.duties.get(key) {
            Some(d) => tx
                .prepare_cached(
                    "INSERT INTO desk_duties (key, state) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                )?
                .execute(params![key, serde_json::to_string(d).map_err(enc)?])?,
            None => tx
                .prepare_cached("DELETE FROM desk_duties WHERE key = ?1")?
                .execute(params![key])?,
        };
    }
    for id in &changes.dispatched {
        let alert = i64::try_from(*id).unwrap_or(i64::MAX);
        match desk.dispatched.get(id) {
            Some(at) => tx
                .prepare_cached(
                    "INSERT INTO desk_dispatched (alert, at) VALUES (?1, ?2) ON CONFLICT (alert) DO UPDATE SET at = excluded.at",
                )?
                .execute(params![alert, at])?,
            None => tx
                .prepare_cached("DELETE FROM desk_dispatched WHERE alert = ?1")?
                .execute(params![alert])?,
        };
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// The desk's state and its open orders, to restore it at start.
///
/// # Errors
/// SQLite's, or a row that does not parse.
pub fn load(conn: &Connection) -> rusqlite::Result<(DeskState, Vec<Order>)> {
    let mut state = DeskState {
        next_id: conn
            .query_row("SELECT next_id FROM desk_meta WHERE id = 1", [], |r| r.get::<_, i64>(0))
            .optional()?
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        ..DeskState::default()
    };
    let mut stmt = conn.prepare("SELECT key, state FROM desk_duties")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (key, text) = row?;
        state.duties.insert(key, parse(&text)?);
    }
    let mut stmt = conn.prepare("SELECT alert, at FROM desk_dispatched")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
        let (alert, at) = row?;
        if let Ok(alert) = u64::try_from(alert) {
            state.dispatched.insert(alert, at);
        }
    }
    let mut stmt =
        conn.prepare("SELECT view FROM work_orders WHERE status NOT IN ('completed', 'false_alarm') ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut open = Vec::new();
    for r in rows {
        open.push(parse(&r?)?);
    }
    Ok((state, open))
}

/// An order query of `GET /api/v1/work-orders`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// `dispatched`, ..., `false_alarm`, or `open` for any not closed.
    pub status: Option<String>,
    /// Orders that are (or were first) with this contractor.
    pub contractor: Option<String>,
    /// The compounds in scope (all if `None`).
    pub sites: Option<Vec<String>>,
    /// The device.
    pub device: Option<String>,
    /// `corrective` or `preventive`.
    pub kind: Option<String>,
    /// Created at or after (ms).
    pub from: Option<i64>,
    /// Created before (ms).
    pub to: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
    /// Only orders older than this one (a page's cursor).
    pub before: Option<u64>,
}

/// Orders as stored, newest first.
///
/// # Errors
/// SQLite's, or a row that does not parse.
pub fn query(conn: &Connection, q: &OrderQuery) -> rusqlite::Result<Vec<Order>> {
    let sites = q.sites.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
    let mut stmt = conn.prepare_cached(
        "SELECT view FROM work_orders
         WHERE (?1 IS NULL OR status = ?1 OR (?1 = 'open' AND status NOT IN ('completed', 'false_alarm')))
           AND (?2 IS NULL OR contractor = ?2 OR primary_contractor = ?2)
           AND (?3 IS NULL OR site IN (SELECT value FROM json_each(?3)))
           AND (?4 IS NULL OR device = ?4) AND (?5 IS NULL OR kind = ?5)
           AND (?6 IS NULL OR created >= ?6) AND (?7 IS NULL OR created < ?7)
           AND (?9 IS NULL OR id < ?9)
         ORDER BY id DESC LIMIT ?8",
    )?;
    let rows = stmt.query_map(
        params![
            q.status,
            q.contractor,
            sites,
            q.device,
            q.kind,
            q.from,
            q.to,
            i64::try_from(q.limit).unwrap_or(i64::MAX),
            q.before.map(|b| i64::try_from(b).unwrap_or(i64::MAX))
        ],
        |r| r.get::<_, String>(0),
    )?;
    rows.map(|r| parse(&r?).map(Order::labelled)).collect()
}

/// One order.
///
/// # Errors
/// SQLite's, or a row that does not parse.
pub fn get(conn: &Connection, id: u64) -> rusqlite::Result<Option<Order>> {
    let view: Option<String> = conn
        .query_row(
            "SELECT view FROM work_orders WHERE id = ?1",
            params![i64::try_from(id).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )
        .optional()?;
    view.map(|v| parse(&v).map(Order::labelled)).transpose()
}

/// What the monthly report of a compound reads: alerts that fired in the
/// month, and the orders created in it or (duties) due in it.
///
/// # Errors
/// SQLite's, or a row that does not parse.
pub fn for_report(
    conn: &Connection,
    site: &str,
    month: &dispatch::Month,
) -> rusqlite::Result<(Vec<dispatch::Fired>, Vec<Order>)> {
    let mut stmt =
        conn.prepare("SELECT view FROM alerts WHERE site = ?1 AND since < ?3 AND changed >= ?2 ORDER BY id")?;
    let rows = stmt.query_map(params![site, month.from, month.to], |r| r.get::<_, String>(0))?;
    let mut fired = Vec::new();
    for r in rows {
        let a: alerting::AlertView = parse(&r?)?;
        if let Some(at) = a.fired_at.filter(|t| month.contains(*t)) {
            fired.push(dispatch::Fired {
                class: a.class,
                code: a.code,
                at,
            });
        }
    }
    let mut stmt = conn.prepare(
        "SELECT view FROM work_orders WHERE site = ?1
           AND ((created >= ?2 AND created < ?3) OR (kind = 'preventive' AND due >= ?2 AND due < ?3))
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![site, month.from, month.to], |r| r.get::<_, String>(0))?;
    let orders = rows.map(|r| parse(&r?)).collect::<rusqlite::Result<Vec<Order>>>()?;
    Ok((fired, orders))
}

/// The records of what the desk answered at `now` (tells are recorded when
/// delivered).
#[must_use]
pub fn records_of(outs: &[Out], now: i64) -> Vec<NewRecord> {
    let mut recs = Vec::new();
    for o in outs {
        let parts: crate::ops::supervision::Parts = match o {
            Out::Order { change, order } => (
                now,
                change.record_kind(order).to_owned(),
                order.site.clone(),
                order.class.clone(),
                order.device.clone(),
                format!("order:{}", order.id),
                serde_json::to_string(&serde_json::json!({ "change": change, "order": order })),
            ),
            Out::Maintenance {
                site,
                class,
                device,
                order,
                active,
            } => (
                0,
                if *active {
                    "maintenance_started"
                } else {
                    "maintenance_ended"
                }
                .to_owned(),
                site.clone(),
                class.clone(),
                device.clone(),
                format!("order:{order}"),
                serde_json::to_string(&serde_json::json!({ "order": order })),
            ),
            Out::Tell(_) => continue,
        };
        recs.extend(crate::ops::supervision::record(parts));
    }
    recs
}

/// The facts of an order for the words people read (`notify::text`).
fn order_notice(kind: &str, now: i64, o: &Order) -> notify::Notice {
    // The next deadline the contractor has to meet.
    let due = if o.status.is_closed() {
        None
    } else if o.responded_at.is_none() && o.deadlines.respond.is_some() {
        o.deadlines.respond.map(|at| ("respond", at))
    } else if o.arrived_at.is_none() && o.deadlines.arrive.is_some() {
        o.deadlines.arrive.map(|at| ("arrive", at))
    } else {
        Some(("complete", o.deadlines.complete))
    };
    notify::Notice {
        kind: kind.to_owned(),
        site: o.site.clone(),
        building: o.building.clone(),
        at: now,
        // A trapped passenger past the bureau's limit is urgent whatever the code's severity.
        critical: o.severity == "critical" || kind == "bureau_flag",
        order: Some(notify::OrderFacts {
            id: o.id,
            code: o.code.clone(),
            device: o.device.clone(),
            port: o.port,
            severity: o.severity.clone(),
            status: o.status.as_str().to_owned(),
            contractor: o.contractor.clone(),
            due: due.map(|(step, at)| notify::Due { step: step.into(), at }),
        }),
        alerts: Vec::new(),
    }
}

/// The facts of a grouped alert notification.
fn alert_notice(n: &alerting::Notification) -> notify::Notice {
    let fact = |a: &alerting::AlertView, resolved: bool| notify::AlertFacts {
        id: a.id,
        code: a.code.clone(),
        device: a.device.clone(),
        port: a.port,
        severity: a.severity.as_str().to_owned(),
        resolved,
        at: if resolved {
            a.resolved_at.unwrap_or(n.at)
        } else {
            a.fired_at.unwrap_or(a.since)
        },
    };
    notify::Notice {
        kind: "alert_notification".into(),
        site: n.site.clone(),
        building: n.building.clone(),
        at: n.at,
        critical: n.critical,
        order: None,
        alerts: n
            .firing
            .iter()
            .map(|a| fact(a, false))
            .chain(n.resolved.iter().map(|a| fact(a, true)))
            .collect(),
    }
}

/// A delivery in flight, for its outcomes' records (one per channel that
/// reaches the contact, so it is kept until it is old, not removed at the
/// first outcome).
#[derive(Clone, Debug)]
struct InFlight {
    site: String,
    subject: String,
    at: i64,
    /// A channel's attempt was cut off by shutdown: the delivery stays in
    /// the outbox table for the next start.
    interrupted: bool,
    /// The delivery as kept in the table, and what its channels reached so
    /// far: an interrupted one is written back with them, so the next start
    /// sends only what is left.
    kept: Option<Queued>,
}

/// What one channel's outcome of a delivery comes to ([`Courier::outcome`]).
#[derive(Debug)]
pub struct Reported {
    /// The outcome's record (none when shutdown cut it off).
    pub record: Option<NewRecord>,
    /// The delivery to forget from the outbox table.
    pub done: Option<String>,
    /// The delivery to write back to the table with what was reached.
    pub rewrite: Option<Queued>,
}

/// How long a delivery's context is kept for its outcomes: longer than the
/// whole retry schedule.
const INFLIGHT_MS: i64 = 3_600_000;

/// Hands what somebody must be told to the outbox, and turns outcomes into
/// records and metrics. Never blocks: a full outbox is a dead letter at once.
///
/// A delivery is decided (rendered, given its id) before the commit that
/// stores what it is about, written to the outbox table in that same
/// commit, and handed to the notification task only after it: a contractor
/// is never told of an order the gateway could lose, and an order stored is
/// never left untold by a kill.
pub struct Courier {
    outbox: Option<Outbox>,
    contacts: HashMap<String, Contact>,
    inflight: HashMap<String, InFlight>,
    /// Decided, waiting for the commit to be handed over.
    staged: Vec<Queued>,
    /// Of those, not yet given to the ledger to write.
    unwritten: Vec<Queued>,
    seq: u64,
}

impl Courier {
    /// A courier over `outbox` (none: nothing is sent, every tell is a dead
    /// letter saying so) reaching `contacts`.
    #[must_use]
    pub fn new(outbox: Option<Outbox>, contacts: &[Contact]) -> Courier {
        Courier {
            outbox,
            contacts: contacts.iter().map(|c| (c.id.clone(), c.clone())).collect(),
            inflight: HashMap::new(),
            staged: Vec::new(),
            unwritten: Vec::new(),
            seq: 0,
        }
    }

    /// Deliveries queued or in flight.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.outbox.as_ref().map_or(0, Outbox::pending)
    }

    /// Stops taking deliveries; unfinished ones come back as outcomes.
    pub fn close(&self, grace: std::time::Duration) {
        if let Some(o) = &self.outbox {
            o.close(grace);
        }
    }

    fn dead(now: i64, site: &str, subject: &str, to: &str, kind: &str, why: &str, m: &Metrics) -> NewRecord {
        m.dead_letters.inc();
        tracing::error!(to, kind, why, "notification not delivered");
        NewRecord {
            at: now,
            kind: "notification_dead_letter".into(),
            site: site.to_owned(),
            class: String::new(),
            device: String::new(),
            subject: subject.to_owned(),
            body: serde_json::json!({ "to": to, "kind": kind, "channel": "none", "attempts": 0, "error": why })
                .to_string(),
        }
    }

    /// Sends one message; a record when it cannot even be queued.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        now: i64,
        to: &str,
        kind: &str,
        site: &str,
        subject_of: &str,
        subject: String,
        text: String,
        body: serde_json::Value,
        notice: Option<notify::Notice>,
        m: &Metrics,
    ) -> Option<NewRecord> {
        if !self.contacts.contains_key(to) {
            return Some(Self::dead(now, site, subject_of, to, kind, "no such contact", m));
        }
        if self.outbox.is_none() {
            return Some(Self::dead(
                now,
                site,
                subject_of,
                to,
                kind,
                "no notification channel is running",
                m,
            ));
        }
        self.seq += 1;
        let q = Queued {
            to: to.to_owned(),
            msg: Message {
                id: format!("{subject_of}/{kind}/{to}/{now}-{}", self.seq),
                kind: kind.to_owned(),
                site: site.to_owned(),
                subject,
                text,
                body,
                notice,
            },
            subject: subject_of.to_owned(),
            at: now,
            reached: Vec::new(),
        };
        self.unwritten.push(q.clone());
        self.staged.push(q);
        None
    }

    /// Deliveries left in the outbox table by an earlier run: sent after
    /// the first commit.
    pub fn restore(&mut self, queued: Vec<Queued>) {
        if !queued.is_empty() {
            tracing::info!(
                deliveries = queued.len(),
                "notifications left by the last run are sent again"
            );
        }
        self.staged.extend(queued);
    }

    /// The deliveries decided since the last call, for the ledger to write
    /// with the next commit.
    pub fn take_unwritten(&mut self) -> Vec<Queued> {
        std::mem::take(&mut self.unwritten)
    }

    /// Hands every decided delivery to the notification task (their commit
    /// is done). Returns records of those the task would not take (full: a
    /// dead letter) and the ids to forget; one the task refuses because it
    /// is closing stays in the table for the next start.
    pub fn release(&mut self, now: i64, m: &Metrics) -> (Vec<NewRecord>, Vec<String>) {
        let mut records = Vec::new();
        let mut done = Vec::new();
        for q in std::mem::take(&mut self.staged) {
            let (id, site, kind) = (q.msg.id.clone(), q.msg.site.clone(), q.msg.kind.clone());
            let Some(contact) = self.contacts.get(&q.to).cloned() else {
                records.push(Self::dead(now, &site, &q.subject, &q.to, &kind, "no such contact", m));
                done.push(id);
                continue;
            };
            let Some(outbox) = &self.outbox else {
                continue;
            };
            let kept = q.clone();
            match outbox.submit(Delivery {
                to: contact,
                msg: q.msg,
                reached: q.reached,
            }) {
                Ok(()) => {
                    self.inflight.insert(
                        id,
                        InFlight {
                            site,
                            subject: q.subject,
                            at: q.at,
                            interrupted: false,
                            kept: Some(kept),
                        },
                    );
                    m.notifications_queued.inc();
                }
                Err(notify::SubmitError::Closed(_)) => {
                    tracing::info!(id, "notification kept for the next start: the outbox is closing");
                }
                Err(e @ notify::SubmitError::Full(_)) => {
                    records.push(Self::dead(now, &site, &q.subject, &q.to, &kind, &e.to_string(), m));
                    done.push(id);
                }
            }
        }
        (records, done)
    }

    /// Decides the delivery of what the desk said (sent after the commit);
    /// returns a record when it cannot be sent at all.
    pub fn tell(&mut self, now: i64, t: &Tell, order: Option<&Order>, m: &Metrics) -> Option<NewRecord> {
        let site = order.map(|o| o.site.clone()).unwrap_or_default();
        let body = serde_json::json!({ "order": order });
        self.send(
            now,
            &t.to,
            t.kind,
            &site,
            &format!("order:{}", t.order),
            t.subject.clone(),
            t.text.clone(),
            body,
            order.map(|o| order_notice(t.kind, now, o)),
            m,
        )
    }

    /// Tells the property managers of a compound of a grouped alert
    /// notification.
    pub fn notification(&mut self, n: &alerting::Notification, managers: &[String], m: &Metrics) -> Vec<NewRecord> {
        // One builder words it for every channel (notify::text): Chinese
        // first with English beside, China's time with its offset.
        let notice = alert_notice(n);
        let words = notice.words();
        let (subject, text) = (words.title.clone(), words.plain());
        let body = serde_json::to_value(n).unwrap_or_default();
        managers
            .iter()
            .filter_map(|to| {
                self.send(
                    n.at,
                    to,
                    "alert_notification",
                    &n.site,
                    "notification",
                    subject.clone(),
                    text.clone(),
                    body.clone(),
                    Some(notice.clone()),
                    m,
                )
            })
            .collect()
    }

    /// What one channel's outcome of a delivery comes to: its record (none
    /// when it was cut off by shutdown: it is sent again after the restart),
    /// the id to forget from the outbox table once its last channel has
    /// reported and none was cut off, and, for one that was, the delivery to
    /// write back with what its channels reached, so the restart sends only
    /// the rest.
    pub fn outcome(&mut self, now: i64, o: &notify::Outcome, m: &Metrics) -> Reported {
        self.inflight.retain(|_, f| now.saturating_sub(f.at) < INFLIGHT_MS);
        let interrupted = o.interrupted();
        let kept = match self.inflight.get_mut(&o.id) {
            Some(f) => {
                f.interrupted |= interrupted;
                if let Some(q) = &mut f.kept {
                    for r in &o.reached {
                        if !q.reached.contains(r) {
                            q.reached.push(r.clone());
                        }
                    }
                }
                f.interrupted
            }
            None => interrupted,
        };
        let done = (o.last && !kept).then(|| o.id.clone());
        let f = if o.last {
            self.inflight.remove(&o.id)
        } else {
            self.inflight.get(&o.id).cloned()
        }
        .unwrap_or(InFlight {
            site: String::new(),
            subject: String::new(),
            at: now,
            interrupted,
            kept: None,
        });
        let rewrite = if o.last && kept {
            f.kept.clone().filter(|q| !q.reached.is_empty())
        } else {
            None
        };
        if interrupted {
            tracing::info!(id = %o.id, to = %o.to, channel = o.channel, reached = ?o.reached,
                "notification cut off by shutdown: kept for the next start");
            return Reported {
                record: None,
                done,
                rewrite,
            };
        }
        let (kind, error) = match &o.result {
            Ok(()) => ("notification_sent", None),
            Err(e) => {
                m.dead_letters.inc();
                tracing::error!(to = %o.to, kind = %o.kind, channel = o.channel, error = %e, "notification is a dead letter");
                ("notification_dead_letter", Some(e.clone()))
            }
        };
        m.deliveries
            .get_or_create(&crate::metrics::DeliveryLabel {
                channel: o.channel.to_owned(),
                result: if error.is_none() { "delivered" } else { "dead_letter" }.to_owned(),
            })
            .inc();
        let record = NewRecord {
            at: now,
            kind: kind.into(),
            site: f.site,
            class: String::new(),
            device: String::new(),
            subject: f.subject,
            body: serde_json::json!({
                "id": o.id, "to": o.to, "kind": o.kind, "channel": o.channel,
                "attempts": o.attempts, "error": error,
            })
            .to_string(),
        };
        Reported {
            record: Some(record),
            done,
            rewrite,
        }
    }
}
