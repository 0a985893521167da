//! The dispatch desk: the pure state machine of work orders. It is fed the
//! alerting core's work-order intents, contractors' steps, the devices the
//! gateway sees, node self-tests and a clock, and answers with what changed
//! and who must be told. It never touches a socket or the wall clock, so a
//! test replays a month of SLA clocks in milliseconds, and a restart is a
//! [`Desk::restore`] of what the gateway stored.
//!
//! Rules, in one place:
//! - one open order per (site, device, code): another alert of the same fault
//!   joins it; an intent seen before (a replay after a crash) is dropped;
//! - deadlines are absolute from the dispatch, and the bureau's from the
//!   fault's start, so a re-dispatch or a restart never resets a clock;
//! - each missed deadline escalates once: re-dispatch to the backup (if the
//!   order is not with it already), tell the property manager; a trapped
//!   passenger past the bureau limit flags the order for the bureau;
//! - periodic duties are preventive orders due one period after the last
//!   completion (before the gateway knew a device: its configured last
//!   visit, else a full period after it was first seen), sent the duty's
//!   notice before they fall due; a missed one is a supervision warning
//!   (`duty_missed`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alerting::{AlertView, WorkOrderIntent};
use serde::{Deserialize, Serialize};

use crate::order::{
    Action, Actor, Deadline, Deadlines, Escalation, Evidence, Kind, Order, Sample, Status, StepError, StepKind,
};
use crate::policy::Policy;

/// How long a dispatched alert id is remembered to drop a replayed intent.
/// The engine sends one intent per episode; a replay comes right after a
/// crash, never a week later.
pub const REMEMBER_ALERTS_MS: i64 = 7 * 24 * 3_600_000;

/// What happened to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", content = "detail", rename_all = "snake_case")]
pub enum OrderChange {
    /// Opened and sent to its contractor.
    Dispatched,
    /// Another alert of the same fault joined it.
    Joined {
        /// The alert.
        alert: u64,
    },
    /// A step.
    Stepped {
        /// The status it led to.
        status: Status,
    },
    /// A deadline passed: escalated.
    DeadlineMissed {
        /// Which.
        deadline: Deadline,
    },
    /// Its alert resolved (it stays open for its contractor to close).
    AlertResolved,
    /// A periodic duty's outcome: done (on time or late).
    DutyDone {
        /// Done by its due time.
        on_time: bool,
    },
}

impl OrderChange {
    /// The supervision record's kind for it.
    #[must_use]
    pub fn record_kind(&self, order: &Order) -> &'static str {
        match self {
            OrderChange::Dispatched => "work_order_dispatched",
            OrderChange::Joined { .. } => "work_order_joined",
            OrderChange::Stepped { status } => match status {
                Status::Dispatched => "work_order_dispatched",
                Status::Responded => "work_order_responded",
                Status::Arrived => "work_order_arrived",
                Status::Completed => "work_order_completed",
                Status::FalseAlarm => "work_order_false_alarm",
            },
            OrderChange::DeadlineMissed { deadline } => match (deadline, order.kind) {
                (Deadline::Bureau, _) => "bureau_flagged",
                (Deadline::Complete, Kind::Preventive) => "duty_missed",
                _ => "deadline_missed",
            },
            OrderChange::AlertResolved => "work_order_alert_resolved",
            OrderChange::DutyDone { .. } => "duty_done",
        }
    }
}

/// Something for somebody: the gateway sends it through the contact's
/// channels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tell {
    /// The contact id.
    pub to: String,
    /// `order_dispatched`, `order_redispatched`, `order_escalated`,
    /// `bureau_flag`, `duty_missed`.
    pub kind: &'static str,
    /// One line.
    pub subject: String,
    /// For people.
    pub text: String,
    /// The order.
    pub order: u64,
}

/// What the desk answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Out {
    /// An order changed: store it, record it, stream it.
    Order {
        /// What happened.
        change: OrderChange,
        /// The order after it.
        order: Box<Order>,
    },
    /// Somebody must be told.
    Tell(Tell),
    /// A device goes under maintenance (somebody arrived for a preventive
    /// order) or comes out of it: alerts are recorded, not dispatched, meanwhile.
    Maintenance {
        /// The compound.
        site: String,
        /// The class.
        class: String,
        /// The device.
        device: String,
        /// The order.
        order: u64,
        /// Starting (`true`) or ending.
        active: bool,
    },
}

/// A periodic duty of one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyState {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// The duty.
    pub duty: String,
    /// Due by.
    pub due: i64,
    /// Last done.
    pub last_done: Option<i64>,
    /// The preventive order open for it; none until its notice before `due`.
    pub order: Option<u64>,
}

/// What the desk persists besides its orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskState {
    /// The next order number.
    pub next_id: u64,
    /// Alert ids already dispatched, with when (pruned after a week).
    pub dispatched: BTreeMap<u64, i64>,
    /// Every device's duties, by (site, device, duty) joined with `/`.
    pub duties: BTreeMap<String, DutyState>,
}

/// What of the [`DeskState`] changed since the last [`Desk::take_changes`]:
/// the store writes these rows, not the whole state. (Writing the whole
/// state with every commit that opened an order made a storm of 10,000
/// alarms quadratic: each commit serialised every duty and every
/// remembered alert id of the compound.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChanges {
    /// Duty keys added, changed or removed (look each up in `duties`).
    pub duties: BTreeSet<String>,
    /// Alert ids remembered or forgotten (look each up in `dispatched`).
    pub dispatched: BTreeSet<u64>,
    /// `next_id` moved.
    pub next_id: bool,
}

impl StateChanges {
    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.duties.is_empty() && self.dispatched.is_empty() && !self.next_id
    }

    /// Adds `other` (changes of a later step, kept while a commit fails).
    pub fn merge(&mut self, other: StateChanges) {
        self.duties.extend(other.duties);
        self.dispatched.extend(other.dispatched);
        self.next_id |= other.next_id;
    }
}

/// The desk.
#[derive(Clone, Debug)]
pub struct Desk {
    policy: Policy,
    orders: BTreeMap<u64, Order>,
    state: DeskState,
    /// What of `state` changed since it was last taken.
    changes: StateChanges,
    /// The open corrective order of each (site, device, code): an alert
    /// joins it without a scan of every open order (a compound-wide storm
    /// of 10,000 alarms made that quadratic).
    corrective: HashMap<(String, String, String), u64>,
    /// When the remembered dispatched alerts were last pruned.
    pruned_at: i64,
    /// The earliest time a duty's preventive order is to be sent, so a tick
    /// does not look at every duty every second; `i64::MIN` to recompute.
    next_duty_order: i64,
}

/// How often the remembered dispatched alerts are pruned at most.
const PRUNE_EVERY_MS: i64 = 60_000;

fn corrective_key(o: &Order) -> Option<(String, String, String)> {
    (o.kind == Kind::Corrective).then(|| (o.site.clone(), o.device.clone(), o.code.clone()))
}

fn code_label(code: &str) -> String {
    match protocol::EventCode::from_name(code) {
        Some(c) => format!("{} {code}", c.label_zh()),
        None => match code {
            "maintenance" => "维保 maintenance".to_owned(),
            _ => code.to_owned(),
        },
    }
}

fn clock(ms: i64) -> String {
    // Minutes and seconds of the day, UTC+8 (China): enough for a deadline
    // in a one-line subject; the JSON body carries the exact time.
    let local = (ms / 1000 + 8 * 3600).rem_euclid(86_400);
    format!("{:02}:{:02}", local / 3600, local / 60 % 60)
}

impl Desk {
    /// An empty desk under `policy`.
    #[must_use]
    pub fn new(policy: Policy) -> Desk {
        Desk {
            policy,
            orders: BTreeMap::new(),
            state: DeskState {
                next_id: 1,
                ..DeskState::default()
            },
            changes: StateChanges::default(),
            corrective: HashMap::new(),
            pruned_at: i64::MIN,
            next_duty_order: i64::MIN,
        }
    }

    /// Restores what the gateway stored: its state and the open orders.
    /// Deadlines are absolute, so the next [`Desk::tick`] escalates whatever
    /// passed while the gateway was away.
    pub fn restore(&mut self, state: DeskState, open: Vec<Order>) {
        self.state = state;
        let top = open.iter().map(|o| o.id).max().unwrap_or(0);
        self.state.next_id = self.state.next_id.max(top + 1).max(1);
        self.orders = open
            .into_iter()
            .filter(|o| !o.status.is_closed())
            .map(|o| (o.id, o))
            .collect();
        self.corrective = self
            .orders
            .values()
            .filter_map(|o| Some((corrective_key(o)?, o.id)))
            .collect();
        self.next_duty_order = i64::MIN;
    }

    /// Swaps the policy (a reload); open orders keep their deadlines.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
        self.next_duty_order = i64::MIN;
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What to persist besides the orders.
    #[must_use]
    pub fn state(&self) -> &DeskState {
        &self.state
    }

    /// What of [`Desk::state`] changed since the last call (the rows a
    /// store must write with the step's orders).
    pub fn take_changes(&mut self) -> StateChanges {
        std::mem::take(&mut self.changes)
    }

    /// The open orders, by id.
    pub fn open(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    /// One open order.
    #[must_use]
    pub fn order(&self, id: u64) -> Option<&Order> {
        self.orders.get(&id)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.state.next_id.max(1);
        self.state.next_id = id + 1;
        self.changes.next_id = true;
        id
    }

    fn emit(out: &mut Vec<Out>, change: OrderChange, order: &Order) {
        out.push(Out::Order {
            change,
            order: Box::new(order.clone()),
        });
    }

    fn tell(out: &mut Vec<Out>, to: &str, kind: &'static str, order: &Order, why: &str) {
        let place = match &order.building {
            Some(b) => format!("{} {b} {}", order.site, order.device),
            None => format!("{} {}", order.site, order.device),
        };
        let label = code_label(&order.code);
        let deadline = match order.deadlines.respond.filter(|_| order.responded_at.is_none()) {
            Some(r) => format!("respond by {}", clock(r)),
            None => format!("complete by {}", clock(order.deadlines.complete)),
        };
        let subject = format!("[{kind}] #{} {label} · {place} · {deadline}", order.id);
        let text = format!(
            "{why}\n工单 work order #{}: {label}\n位置 where: {place}\n状态 status: {}\n承接 contractor: {}\n{deadline} (UTC+8)",
            order.id,
            order.status.as_str(),
            order.contractor.as_deref().unwrap_or("-"),
        );
        out.push(Out::Tell(Tell {
            to: to.to_owned(),
            kind,
            subject,
            text,
            order: order.id,
        }));
    }

    /// Acts on an intent of the alerting core. `series` is the device's
    /// telemetry before the trigger, read from the store by the gateway.
    pub fn intent(&mut self, now: i64, intent: &WorkOrderIntent, series: Vec<Sample>, out: &mut Vec<Out>) {
        match intent {
            WorkOrderIntent::Open { alert } => self.open_for(now, alert, series, out),
            WorkOrderIntent::Close { alert } => {
                let Some(order) = self.orders.values_mut().find(|o| o.alerts.last() == Some(&alert.id)) else {
                    return;
                };
                if order.alert_resolved_at.is_none() {
                    order.alert_resolved_at = Some(alert.resolved_at.unwrap_or(now));
                    Self::emit(out, OrderChange::AlertResolved, order);
                }
            }
        }
    }

    fn open_for(&mut self, now: i64, alert: &AlertView, series: Vec<Sample>, out: &mut Vec<Out>) {
        if now.saturating_sub(self.pruned_at) >= PRUNE_EVERY_MS {
            self.pruned_at = now;
            let forgotten = &mut self.changes.dispatched;
            self.state.dispatched.retain(|id, at| {
                let keep = now.saturating_sub(*at) < REMEMBER_ALERTS_MS;
                if !keep {
                    forgotten.insert(*id);
                }
                keep
            });
        }
        if self.state.dispatched.contains_key(&alert.id) {
            return;
        }
        let sla = self.policy.sla(&alert.site, &alert.class, &alert.code);
        if !sla.dispatch {
            return;
        }
        self.state.dispatched.insert(alert.id, now);
        self.changes.dispatched.insert(alert.id);
        let key = (alert.site.clone(), alert.device.clone(), alert.code.clone());
        if let Some(order) = self.corrective.get(&key).and_then(|id| self.orders.get_mut(id)) {
            order.alerts.push(alert.id);
            order.alert_resolved_at = None;
            Self::emit(out, OrderChange::Joined { alert: alert.id }, order);
            return;
        }
        let id = self.new_id();
        let deadlines = Deadlines {
            respond: Some(now + sla.respond),
            arrive: Some(now + sla.arrive),
            complete: now + sla.complete,
            bureau: sla.bureau_after.map(|b| alert.since + b),
        };
        let sent = self.policy.sent(&alert.site, &alert.class, &alert.code);
        let mut order = self.blank(
            id,
            Kind::Corrective,
            (&alert.site, &alert.class, &alert.device),
            (&alert.code, sent),
            now,
            deadlines,
        );
        order.port = alert.port;
        alert.severity.as_str().clone_into(&mut order.severity);
        order.fault_since = alert.since;
        order.alerts = vec![alert.id];
        order.alert_resolved_at = alert.resolved_at;
        order.evidence = Evidence {
            at_fire: alert.evidence.clone(),
            series,
            sources: alert.sources.clone(),
        };
        order.building.clone_from(&alert.building);
        Self::emit(out, OrderChange::Dispatched, &order);
        if let Some(c) = &order.contractor {
            Self::tell(out, c, "order_dispatched", &order, "新工单 New work order");
        }
        self.corrective.insert(key, id);
        self.orders.insert(id, order);
    }

    /// A step by a contractor (or on its behalf). Returns the order after it.
    ///
    /// # Errors
    /// [`StepError`]: an unknown (or closed: the gateway tells which) order,
    /// somebody else's order, a step out of order. Nothing changes then.
    pub fn step(
        &mut self,
        now: i64,
        id: u64,
        step: StepKind,
        by: &Actor,
        note: Option<String>,
        out: &mut Vec<Out>,
    ) -> Result<Order, StepError> {
        let order = self.orders.get_mut(&id).ok_or(StepError::NotFound(id))?;
        let was = order.status;
        order.step(now, step, by, note)?;
        let order = order.clone();
        Self::emit(out, OrderChange::Stepped { status: order.status }, &order);
        let maintenance = order.kind == Kind::Preventive && order.code == "maintenance";
        if maintenance && step == StepKind::Arrive {
            out.push(Self::maintenance(&order, true));
        }
        if order.status.is_closed() {
            self.orders.remove(&id);
            if let Some(key) = corrective_key(&order) {
                self.corrective.remove(&key);
            }
            if maintenance && was == Status::Arrived {
                out.push(Self::maintenance(&order, false));
            }
            if order.kind == Kind::Preventive {
                self.duty_done(now, &order, out);
            }
        }
        Ok(order)
    }

    /// A new order of `code`, sent to `sent` (the policy's choice for the
    /// code). The backup contractor takes it over on a missed deadline only
    /// when it went to the contractor: the lifts' backup does not stand in
    /// for the property's staff.
    fn blank(
        &self,
        id: u64,
        kind: Kind,
        (site, class, device): (&str, &str, &str),
        (code, sent): (&str, Option<String>),
        now: i64,
        deadlines: Deadlines,
    ) -> Order {
        let who = self.policy.assignment(site, class);
        let backup = who.backup.filter(|_| sent.is_some() && sent == who.contractor);
        Order {
            id,
            kind,
            site: site.to_owned(),
            class: class.to_owned(),
            device: device.to_owned(),
            code: code.to_owned(),
            port: None,
            severity: "info".to_owned(),
            status: Status::Dispatched,
            contractor: sent.clone(),
            primary: sent,
            backup,
            manager: who.manager,
            created_at: now,
            fault_since: now,
            deadlines,
            responded_at: None,
            arrived_at: None,
            closed_at: None,
            steps: Vec::new(),
            escalations: Vec::new(),
            bureau_flagged: false,
            alerts: Vec::new(),
            alert_resolved_at: None,
            evidence: Evidence::default(),
            building: None,
            label_zh: std::borrow::Cow::Borrowed(protocol::EventCode::label_zh_of(code)),
        }
    }

    fn maintenance(order: &Order, active: bool) -> Out {
        Out::Maintenance {
            site: order.site.clone(),
            class: order.class.clone(),
            device: order.device.clone(),
            order: order.id,
            active,
        }
    }

    fn duty_key(site: &str, device: &str, duty: &str) -> String {
        format!("{site}/{device}/{duty}")
    }

    /// A device the gateway knows (at start, and when one appears): its
    /// periodic duties begin. The first falls due one period after its last
    /// visit configured (`[[dispatch.last_done]]`), else one period from
    /// now; its order is sent the duty's notice before that (at once for one
    /// overdue). A visit configured later than the one the desk knows moves
    /// the due date of a duty with no order open yet.
    pub fn device_seen(&mut self, now: i64, site: &str, class: &str, device: &str, out: &mut Vec<Out>) {
        let duties: Vec<_> = self.policy.duties(site, class).cloned().collect();
        for d in duties {
            let key = Self::duty_key(site, device, &d.duty);
            let done = self.policy.last_done(site, device, &d.duty);
            match self.state.duties.get_mut(&key) {
                Some(s) => {
                    let Some(at) = done.filter(|&at| s.order.is_none() && s.last_done.is_none_or(|l| at > l)) else {
                        continue;
                    };
                    s.last_done = Some(at);
                    s.due = at + d.every;
                }
                None => {
                    self.state.duties.insert(
                        key.clone(),
                        DutyState {
                            site: site.to_owned(),
                            class: class.to_owned(),
                            device: device.to_owned(),
                            duty: d.duty.clone(),
                            due: done.unwrap_or(now) + d.every,
                            last_done: done,
                            order: None,
                        },
                    );
                }
            }
            self.changes.duties.insert(key);
            self.next_duty_order = i64::MIN;
        }
        self.send_due_duties(now, out);
    }

    /// Sends the preventive order of every duty whose notice has begun.
    fn send_due_duties(&mut self, now: i64, out: &mut Vec<Out>) {
        if now < self.next_duty_order {
            return;
        }
        let mut next = i64::MAX;
        let mut send = Vec::new();
        let mut gone = Vec::new();
        for (key, d) in self.state.duties.iter().filter(|(_, d)| d.order.is_none()) {
            let Some(p) = self.policy.duties(&d.site, &d.class).find(|p| p.duty == d.duty) else {
                // The duty left the policy before its order was sent: it ends.
                gone.push(key.clone());
                continue;
            };
            let at = d.due - p.notice;
            if now >= at {
                send.push(key.clone());
            } else {
                next = next.min(at);
            }
        }
        for key in gone {
            self.state.duties.remove(&key);
            self.changes.duties.insert(key);
        }
        for key in send {
            let Some(d) = self.state.duties.get(&key).cloned() else {
                continue;
            };
            let id = self.preventive(now, &d.site, &d.class, &d.device, &d.duty, d.due, out);
            if let Some(s) = self.state.duties.get_mut(&key) {
                s.order = Some(id);
            }
            self.changes.duties.insert(key);
        }
        self.next_duty_order = next;
    }

    #[allow(clippy::too_many_arguments)]
    fn preventive(
        &mut self,
        now: i64,
        site: &str,
        class: &str,
        device: &str,
        duty: &str,
        due: i64,
        out: &mut Vec<Out>,
    ) -> u64 {
        let id = self.new_id();
        let deadlines = Deadlines {
            respond: None,
            arrive: None,
            complete: due,
            bureau: None,
        };
        let sent = self.policy.assignment(site, class).contractor;
        let order = self.blank(
            id,
            Kind::Preventive,
            (site, class, device),
            (duty, sent),
            now,
            deadlines,
        );
        Self::emit(out, OrderChange::Dispatched, &order);
        if let Some(c) = &order.contractor {
            Self::tell(out, c, "order_dispatched", &order, "定期任务 Periodic duty");
        }
        self.orders.insert(id, order);
        id
    }

    fn duty_done(&mut self, now: i64, order: &Order, out: &mut Vec<Out>) {
        let key = Self::duty_key(&order.site, &order.device, &order.code);
        let Some(d) = self.state.duties.get(&key).cloned() else {
            return;
        };
        if d.order != Some(order.id) {
            return;
        }
        Self::emit(out, OrderChange::DutyDone { on_time: now <= d.due }, order);
        self.changes.duties.insert(key.clone());
        self.next_duty_order = i64::MIN;
        let every = self
            .policy
            .duties(&d.site, &d.class)
            .find(|p| p.duty == d.duty)
            .map(|p| p.every);
        match every {
            // The next falls due one period after this completion; its order
            // is sent at its notice.
            Some(every) => {
                let due = now + every;
                self.state.duties.insert(
                    key,
                    DutyState {
                        due,
                        last_done: Some(now),
                        order: None,
                        ..d
                    },
                );
                self.send_due_duties(now, out);
            }
            // The duty left the policy: it ends with this completion.
            None => {
                self.state.duties.remove(&key);
            }
        }
    }

    /// A node's self-test ended. A passing run fulfils the device's duties
    /// that a self-test fulfils, completing their open order as `node`.
    pub fn self_test(&mut self, now: i64, site: &str, class: &str, device: &str, ok: bool, out: &mut Vec<Out>) {
        if !ok {
            return;
        }
        let duties: Vec<_> = self
            .policy
            .duties(site, class)
            .filter(|d| d.by_self_test)
            .map(|d| d.duty.clone())
            .collect();
        for duty in duties {
            let key = Self::duty_key(site, device, &duty);
            let Some(d) = self.state.duties.get_mut(&key) else {
                continue;
            };
            let Some(id) = d.order else {
                // Done before its order was sent: the next falls due a
                // period from now (nobody was sent, so there is nothing to close).
                let every = self
                    .policy
                    .duties(site, class)
                    .find(|p| p.duty == duty)
                    .map_or(0, |p| p.every);
                d.last_done = Some(now);
                d.due = now + every;
                self.changes.duties.insert(key);
                self.next_duty_order = i64::MIN;
                continue;
            };
            let by = Actor {
                name: "node".into(),
                contractor: None,
            };
            let _ = self.step(now, id, StepKind::Complete, &by, Some("passing self-test".into()), out);
        }
    }

    /// Lets time pass: duties whose notice has begun get their order, and
    /// every deadline that has passed escalates, once.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Out>) {
        self.send_due_duties(now, out);
        let bureau = self.policy.bureau().map(str::to_owned);
        for order in self.orders.values_mut() {
            let d = order.deadlines.clone();
            let due = [
                (Deadline::Respond, d.respond.filter(|_| order.responded_at.is_none())),
                (Deadline::Arrive, d.arrive.filter(|_| order.arrived_at.is_none())),
                (Deadline::Complete, Some(d.complete)),
                (Deadline::Bureau, d.bureau.filter(|_| order.alert_resolved_at.is_none())),
            ];
            for (deadline, at) in due {
                let Some(at) = at else { continue };
                if now < at || order.escalations.iter().any(|e| e.missed == deadline) {
                    continue;
                }
                Self::escalate(now, order, deadline, at, bureau.as_deref(), out);
            }
        }
    }

    fn escalate(now: i64, order: &mut Order, deadline: Deadline, due: i64, bureau: Option<&str>, out: &mut Vec<Out>) {
        let mut actions = Vec::new();
        let mut tells: Vec<(String, &'static str)> = Vec::new();
        if deadline == Deadline::Bureau {
            order.bureau_flagged = true;
            actions.push(Action::FlaggedBureau {
                bureau: bureau.map(str::to_owned),
            });
            if let Some(b) = bureau {
                tells.push((b.to_owned(), "bureau_flag"));
            }
        } else if let Some(b) = order.backup.clone().filter(|b| order.contractor.as_ref() != Some(b)) {
            actions.push(Action::Redispatched {
                from: order.contractor.clone(),
                to: b.clone(),
            });
            order.contractor = Some(b.clone());
            tells.push((b, "order_redispatched"));
        }
        if let Some(m) = order.manager.clone() {
            actions.push(Action::NotifiedManager { manager: m.clone() });
            let kind = match (deadline, order.kind) {
                (Deadline::Bureau, _) => "bureau_flag",
                (Deadline::Complete, Kind::Preventive) => "duty_missed",
                _ => "order_escalated",
            };
            tells.push((m, kind));
        }
        if actions.is_empty() {
            actions.push(Action::NobodyToTell);
        }
        order.escalations.push(Escalation {
            at: now,
            missed: deadline,
            due,
            actions,
        });
        Self::emit(out, OrderChange::DeadlineMissed { deadline }, order);
        let why = match deadline {
            Deadline::Bureau => "困人超过1小时，已报监管部门 Trapped past the bureau's limit: flagged".to_owned(),
            d => format!("超时 Missed the {} deadline ({})", d.as_str(), clock(due)),
        };
        for (to, kind) in tells {
            Self::tell(out, &to, kind, order, &why);
        }
    }
}
