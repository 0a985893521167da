//! A whole node: one class's state machine, its MQTT session (`bdseq`, `seq`,
//! birth and last will), commands and acks, and the store-and-forward outbox.
//!
//! Still pure: it is fed samples, commands, link changes and `now`, and hands
//! out encoded payloads for an MQTT client to publish. Nothing here knows a
//! socket, so tests and the HIL simulation drive it message by message.
//!
//! ```text
//!   step(now, inputs) ──► class logic ──► events ──┐
//!         └── every interval_s ──► sample ─────────┼──► outbox ──► next_payload() ──► MQTT client
//!   on_command(payload) ──► verify ──► op ──► ack ─┘                   ▲ published() pops
//!   on_connect() ──► birth, dropped counters, still-active events ─────┘
//! ```
//!
//! Commands are signed ([`protocol::cmdauth`]): the node carries out one only
//! if its MAC verifies with the command key in the node's [`Credentials`],
//! its counter is above the last one accepted, and it has not expired by the
//! node's wall clock (once that is set). Anything else is answered `ok:
//! false` with the reason and changes nothing. The counter lives in RAM; a
//! board with battery-backed memory keeps it there
//! ([`Node::command_counter`], [`Node::restore_command_counter`]), otherwise
//! after a reboot only `exp` bounds a replay (see `docs/firmware.md`).

use protocol::cmdauth::{Guard, Recipient};
use protocol::message::ErrorText;
use protocol::{
    Ack, Birth, Cmd, Death, Detail, Event, Format, Kind, Message, Metric, Named, Op, PortSample, Refusal, Sample,
    Scalar, Timestamp, V1, Value, encode, encode_sample, mark_hist,
};

use crate::alarm::{Events, NodeEvent};
use crate::charger::{ChargerInputs, ChargerNode};
use crate::config::Credentials;
use crate::elevator::{ElevatorInputs, ElevatorNode};
use crate::firepump::{FirepumpInputs, FirepumpNode};
use crate::hal::Millis;
use crate::outbox::{Dropped, Outbox, Priority};
use crate::registers::{CommandError, RegisterImage};

/// Outbox size: 64 messages in 8 KiB (a 12-port bay's binary sample is about
/// 430 bytes, an event about 40).
pub const OUTBOX_BYTES: usize = 8 * 1024;
/// Outbox slots.
pub const OUTBOX_SLOTS: usize = 64;
/// Largest single payload a node builds (a 12-port bay's JSON sample).
pub const MAX_PAYLOAD: usize = 2048;

/// What the three class state machines have in common, so one [`Node`] drives
/// any of them.
pub trait ClassLogic: RegisterImage {
    /// One sample of the class's sensors.
    type Inputs;

    /// Feeds a sample; returns the events.
    fn step(&mut self, now: Millis, inputs: &Self::Inputs) -> Events;

    /// Every code still raised, to resend after a reconnect.
    fn active_events(&self) -> Events;

    /// Encodes the current telemetry.
    ///
    /// # Errors
    /// As [`encode_sample`].
    fn encode_sample(
        &self,
        header: SampleHeader,
        format: Format,
        buf: &mut [u8],
    ) -> Result<usize, protocol::EncodeError>;

    /// Performs a command's op: the events it caused (a cleared cut-off),
    /// and whether it was carried out or why not. Both can come together: a
    /// `clear` of every port clears the cool ones and refuses the hot one.
    fn perform(&mut self, op: Op, cmd: &Cmd, now: Millis) -> (Events, Result<(), CommandError>);

    /// Class facts for the birth: `(rated_speed_mps, floors, ports)`.
    fn birth_facts(&self) -> (Option<f64>, Option<u16>, Option<u8>);

    /// Every threshold in force, by name, in the class's table order (for
    /// the birth's `cfg` once one was set by command).
    fn thresholds(&self, each: &mut dyn FnMut(&str, f32));
}

/// Feeds every threshold of `table` as it is in `config` to `each`.
fn each_threshold<C>(table: &[crate::config::Threshold<C>], config: &C, each: &mut dyn FnMut(&str, f32)) {
    for t in table {
        each(t.name, (t.get)(config));
    }
}

/// The header fields of a sample, chosen by the session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleHeader {
    /// Message counter.
    pub seq: u32,
    /// Device time.
    pub ts: Timestamp,
    /// Session.
    pub bdseq: u32,
    /// `now`, for session durations.
    pub now: Millis,
}

fn sample_of<'a>(h: SampleHeader, m: &'a [(Metric, Value)], ports: &'a [PortSample<'a>]) -> Sample<'a> {
    Sample {
        seq: h.seq,
        ts: h.ts,
        hist: false,
        bdseq: Some(h.bdseq),
        m,
        ports,
    }
}

fn threshold_args(cmd: &Cmd) -> Result<(&str, f64), CommandError> {
    match (&cmd.args.name, cmd.args.value) {
        (Some(n), Some(v)) => Ok((n.as_str(), v)),
        _ => Err(CommandError::BadArgument),
    }
}

impl ClassLogic for ElevatorNode {
    type Inputs = ElevatorInputs;

    fn step(&mut self, now: Millis, inputs: &ElevatorInputs) -> Events {
        ElevatorNode::step(self, now, inputs)
    }

    fn active_events(&self) -> Events {
        ElevatorNode::active_events(self)
    }

    fn encode_sample(&self, h: SampleHeader, f: Format, buf: &mut [u8]) -> Result<usize, protocol::EncodeError> {
        encode_sample(&sample_of(h, &self.readings(), &[]), f, buf)
    }

    fn perform(&mut self, op: Op, cmd: &Cmd, now: Millis) -> (Events, Result<(), CommandError>) {
        let result = match op {
            Op::SetThreshold => threshold_args(cmd).and_then(|(name, value)| self.set_threshold(name, value)),
            Op::HoldDoors => {
                let hold = cmd.args.hold.ok_or(CommandError::BadArgument);
                hold.and_then(|hold| self.hold_doors(hold, now))
            }
            Op::CutOff | Op::Clear | Op::SelfTest => Err(CommandError::Unsupported),
        };
        (Events::new(), result)
    }

    fn birth_facts(&self) -> (Option<f64>, Option<u16>, Option<u8>) {
        let c = self.config();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let floors = c.floors.clamp(1.0, 999.0) as u16;
        (Some(f64::from(c.rated_speed_mps)), Some(floors), None)
    }

    fn thresholds(&self, each: &mut dyn FnMut(&str, f32)) {
        each_threshold(crate::elevator::THRESHOLDS, self.config(), each);
    }
}

impl ClassLogic for FirepumpNode {
    type Inputs = FirepumpInputs;

    fn step(&mut self, now: Millis, inputs: &FirepumpInputs) -> Events {
        FirepumpNode::step(self, now, inputs)
    }

    fn active_events(&self) -> Events {
        FirepumpNode::active_events(self)
    }

    fn encode_sample(&self, h: SampleHeader, f: Format, buf: &mut [u8]) -> Result<usize, protocol::EncodeError> {
        encode_sample(&sample_of(h, &self.readings(), &[]), f, buf)
    }

    fn perform(&mut self, op: Op, cmd: &Cmd, now: Millis) -> (Events, Result<(), CommandError>) {
        let result = match op {
            Op::SelfTest => self.start_self_test(now),
            Op::SetThreshold => threshold_args(cmd).and_then(|(name, value)| self.set_threshold(name, value)),
            Op::CutOff | Op::Clear | Op::HoldDoors => Err(CommandError::Unsupported),
        };
        (Events::new(), result)
    }

    fn birth_facts(&self) -> (Option<f64>, Option<u16>, Option<u8>) {
        (None, None, None)
    }

    fn thresholds(&self, each: &mut dyn FnMut(&str, f32)) {
        each_threshold(crate::firepump::THRESHOLDS, self.config(), each);
    }
}

impl ClassLogic for ChargerNode {
    type Inputs = ChargerInputs;

    fn step(&mut self, now: Millis, inputs: &ChargerInputs) -> Events {
        ChargerNode::step(self, now, inputs)
    }

    fn active_events(&self) -> Events {
        ChargerNode::active_events(self)
    }

    fn encode_sample(&self, h: SampleHeader, f: Format, buf: &mut [u8]) -> Result<usize, protocol::EncodeError> {
        let per_port: heapless::Vec<_, { crate::charger::MAX_PORTS }> = (1..=self.port_count())
            .map(|p| (p, self.port_readings(h.now, p)))
            .collect();
        let ports: heapless::Vec<PortSample<'_>, { crate::charger::MAX_PORTS }> =
            per_port.iter().map(|(p, m)| PortSample { port: *p, m }).collect();
        encode_sample(&sample_of(h, &self.readings(), &ports), f, buf)
    }

    fn perform(&mut self, op: Op, cmd: &Cmd, _now: Millis) -> (Events, Result<(), CommandError>) {
        let result = match op {
            Op::CutOff => self.cut_off(cmd.args.port),
            Op::Clear => return self.clear_what_can_be(cmd.args.port),
            Op::SetThreshold => threshold_args(cmd).and_then(|(name, value)| self.set_threshold(name, value)),
            Op::SelfTest | Op::HoldDoors => Err(CommandError::Unsupported),
        };
        (Events::new(), result)
    }

    fn birth_facts(&self) -> (Option<f64>, Option<u16>, Option<u8>) {
        (None, None, Some(self.port_count()))
    }

    fn thresholds(&self, each: &mut dyn FnMut(&str, f32)) {
        each_threshold(crate::charger::THRESHOLDS, self.config(), each);
    }
}

/// Identity and settings a node announces in its birth.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Firmware version.
    pub fw: protocol::message::ShortText,
    /// Hardware model.
    pub model: protocol::message::ShortText,
    /// Hash of the node's configuration.
    pub cfg: protocol::message::ConfigHash,
    /// Telemetry interval.
    pub interval_s: u32,
    /// Payload encoding on the link.
    pub format: Format,
}

/// A payload ready to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The topic kind.
    pub kind: Kind,
    /// MQTT QoS: always 1, so that store-and-forward ends only at the broker.
    pub qos: u8,
    /// Length written into the caller's buffer.
    pub len: usize,
}

/// Counters a node keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Payloads that could not be encoded (a bug or a bad reading): counted, not sent.
    pub encode_errors: u32,
    /// Commands that could not be decoded.
    pub bad_commands: u32,
    /// Commands refused as not authorised (no key, unsigned, bad MAC,
    /// replayed, expired).
    pub refused_commands: u32,
}

/// What became of a `cmd` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Authorised and carried out (acked `ok: true`).
    Done,
    /// Authorised, but the node would not or could not (acked with the reason).
    Failed(CommandError),
    /// Not authorised: nothing done (acked with the refusal).
    Refused(Refusal),
    /// Did not decode: dropped unanswered, there is no id to answer.
    Malformed,
}

/// One node: class logic, session and outbox.
#[derive(Clone, Debug)]
pub struct Node<L> {
    logic: L,
    info: NodeInfo,
    outbox: Outbox<OUTBOX_BYTES, OUTBOX_SLOTS>,
    bdseq: u32,
    seq: u32,
    link_up: bool,
    wall_offset_ms: Option<i64>,
    last_sample: Option<Millis>,
    stats: NodeStats,
    credentials: Option<Credentials>,
    guard: Guard,
    /// A `set_threshold` was carried out since start-up: the birth's `cfg`
    /// then says which thresholds are in force ([`Node::config_hash`]).
    thresholds_set: bool,
}

impl<L: ClassLogic> Node<L> {
    /// A node that has not connected yet.
    pub fn new(logic: L, info: NodeInfo) -> Self {
        Node {
            logic,
            info,
            outbox: Outbox::new(),
            bdseq: 0,
            seq: 0,
            link_up: false,
            wall_offset_ms: None,
            last_sample: None,
            stats: NodeStats::default(),
            credentials: None,
            guard: Guard::new(),
            thresholds_set: false,
        }
    }

    /// Sets the node's credentials from its configuration: its identity,
    /// MQTT password and command key. Until then (and without a key) every
    /// command is refused with `no_key`.
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = Some(credentials);
    }

    /// The node's credentials, for its uplink's CONNECT.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The counter of the last command accepted (0: none since boot), for a
    /// board to keep in memory that survives a reset.
    pub fn command_counter(&self) -> u64 {
        self.guard.last()
    }

    /// Restores the command counter saved before a reset; it never moves back.
    pub fn restore_command_counter(&mut self, last: u64) {
        self.guard.restore(last);
    }

    /// The class logic (to read relay states, readings).
    pub fn logic(&self) -> &L {
        &self.logic
    }

    /// The class logic, mutable (for Modbus commands through [`RegisterImage`]).
    pub fn logic_mut(&mut self) -> &mut L {
        &mut self.logic
    }

    /// The outbox (for diagnostics and tests).
    pub fn outbox(&self) -> &Outbox<OUTBOX_BYTES, OUTBOX_SLOTS> {
        &self.outbox
    }

    /// The node's own counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Sets the wall clock: `epoch_ms` is the Unix time at `now` (from SNTP, an
    /// RTC, or the gateway). Until it is set, `ts` counts from the epoch at boot
    /// and the gateway flags the skew.
    pub fn set_wall_clock(&mut self, now: Millis, epoch_ms: i64) {
        self.wall_offset_ms = Some(epoch_ms - i64::try_from(now.0).unwrap_or(i64::MAX));
    }

    fn ts(&self, now: Millis) -> Timestamp {
        let mono = i64::try_from(now.0).unwrap_or(i64::MAX);
        Timestamp::from_millis(mono.saturating_add(self.wall_offset_ms.unwrap_or(0)))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The last will to register when connecting: a `death` for the session
    /// that connect will start.
    ///
    /// # Errors
    /// Only if `buf` is too small.
    pub fn will(&self, buf: &mut [u8]) -> Result<usize, protocol::EncodeError> {
        let death = Message::Death(Death {
            v: V1,
            bdseq: self.bdseq.wrapping_add(1),
        });
        encode(&death, self.info.format, buf)
    }

    /// The broker accepted the connection: starts a session and returns its
    /// birth (publish it first, QoS 1). Queues the drop counters and every
    /// still-raised code after it.
    ///
    /// # Errors
    /// Only if `buf` is too small.
    pub fn on_connect(&mut self, now: Millis, buf: &mut [u8]) -> Result<Outgoing, protocol::EncodeError> {
        self.bdseq = self.bdseq.wrapping_add(1);
        self.seq = 0;
        self.link_up = true;
        let (rated_speed_mps, floors, ports) = self.logic.birth_facts();
        let birth = Message::Birth(Birth {
            v: V1,
            seq: 0,
            ts: self.ts(now),
            hist: false,
            bdseq: self.bdseq,
            fw: self.info.fw.clone(),
            model: self.info.model.clone(),
            cfg: self.config_hash(),
            interval_s: self.info.interval_s.max(1),
            rated_speed_mps,
            floors,
            ports,
        });
        let len = encode(&birth, self.info.format, buf)?;
        self.queue_health(now);
        let events = self.logic.active_events();
        self.queue_events(now, &events);
        Ok(Outgoing {
            kind: Kind::Birth,
            qos: 1,
            len,
        })
    }

    /// The `cfg` of the node's birth. Until a `set_threshold` was carried
    /// out it is the configured one ([`NodeInfo::cfg`], the build's). After
    /// one, it is that text (cut to fit) + `+` + 8 hex digits of FNV-1a 32
    /// over the configured text, a 0 byte, and each threshold in force (its
    /// name, a 0 byte, its `f32` bits big-endian) in table order: a gateway
    /// that pushed overrides sees from the next birth that the node holds
    /// them, and a reset (which brings back the build's thresholds) brings
    /// back the configured `cfg`.
    #[must_use]
    pub fn config_hash(&self) -> protocol::message::ConfigHash {
        if !self.thresholds_set {
            return self.info.cfg.clone();
        }
        let mut h = Fnv1a32::new();
        h.feed(self.info.cfg.as_bytes());
        h.feed(&[0]);
        self.logic.thresholds(&mut |name, value| {
            h.feed(name.as_bytes());
            h.feed(&[0]);
            h.feed(&value.to_bits().to_be_bytes());
        });
        let digest = h.0;
        let mut out = protocol::message::ConfigHash::new();
        let room = out.capacity() - 9;
        for c in self.info.cfg.chars() {
            if out.len() + c.len_utf8() > room {
                break;
            }
            // Within `room`, checked above.
            let _ = out.push(c);
        }
        let _ = out.push('+');
        for i in (0..8).rev() {
            let nibble = (digest >> (i * 4)) & 0xf;
            // A nibble is a hex digit.
            let _ = out.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
        out
    }

    /// The link is gone: what is queued will be replayed as history.
    pub fn on_disconnect(&mut self) {
        self.link_up = false;
        self.outbox.mark_all_replay();
    }

    /// Whether the node believes it is connected.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Feeds one sample: runs the class logic, queues its events, and a
    /// telemetry sample when one is due or the events changed something.
    pub fn step(&mut self, now: Millis, inputs: &L::Inputs) -> Events {
        let events = self.logic.step(now, inputs);
        self.queue_events(now, &events);
        let due = self
            .last_sample
            .is_none_or(|t| now.since(t) >= u64::from(self.info.interval_s.max(1)) * 1000);
        if due || !events.is_empty() {
            self.queue_sample(now);
        }
        events
    }

    fn queue_sample(&mut self, now: Millis) {
        self.last_sample = Some(now);
        let header = SampleHeader {
            seq: self.next_seq(),
            ts: self.ts(now),
            bdseq: self.bdseq,
            now,
        };
        let mut buf = [0u8; MAX_PAYLOAD];
        match self.logic.encode_sample(header, self.info.format, &mut buf) {
            Ok(n) => {
                self.outbox
                    .push(Kind::Data, &buf[..n], Priority::Telemetry, !self.link_up);
            }
            Err(_) => self.stats.encode_errors = self.stats.encode_errors.saturating_add(1),
        }
    }

    fn queue_health(&mut self, now: Millis) {
        let Dropped { telemetry, events } = self.outbox.dropped();
        let m = [
            (Metric::DroppedTelemetry, Value::from(telemetry)),
            (Metric::DroppedEvents, Value::from(events)),
        ];
        let sample = Sample {
            seq: self.next_seq(),
            ts: self.ts(now),
            hist: false,
            bdseq: Some(self.bdseq),
            m: &m,
            ports: &[],
        };
        let mut buf = [0u8; 128];
        match encode_sample(&sample, self.info.format, &mut buf) {
            Ok(n) => {
                self.outbox.push(Kind::Data, &buf[..n], Priority::Event, !self.link_up);
            }
            Err(_) => self.stats.encode_errors = self.stats.encode_errors.saturating_add(1),
        }
    }

    fn queue_events(&mut self, now: Millis, events: &[NodeEvent]) {
        for e in events {
            let msg = Message::Event(Event {
                v: V1,
                seq: self.next_seq(),
                ts: self.ts(now),
                hist: false,
                bdseq: Some(self.bdseq),
                code: Named::Known(e.code),
                active: e.active,
                detail: detail_of(e),
            });
            self.queue(&msg, Priority::Event);
        }
    }

    fn queue(&mut self, msg: &Message, priority: Priority) {
        let mut buf = [0u8; 512];
        match encode(msg, self.info.format, &mut buf) {
            Ok(n) => {
                self.outbox.push(msg.kind(), &buf[..n], priority, !self.link_up);
            }
            Err(_) => self.stats.encode_errors = self.stats.encode_errors.saturating_add(1),
        }
    }

    /// A `cmd` payload arrived: checks its signature, counter and expiry,
    /// performs it and queues the `ack` (and any events it caused). A
    /// command that is not authorised is answered with the refusal and
    /// changes nothing. A payload that does not decode is counted and
    /// dropped: without an id there is nothing to answer.
    pub fn on_command(&mut self, now: Millis, payload: &[u8]) -> CommandOutcome {
        let Ok(Message::Cmd(cmd)) = protocol::decode(Kind::Cmd, payload) else {
            self.stats.bad_commands = self.stats.bad_commands.saturating_add(1);
            return CommandOutcome::Malformed;
        };
        let outcome = if let Err(refusal) = self.authorise(now, &cmd) {
            self.stats.refused_commands = self.stats.refused_commands.saturating_add(1);
            CommandOutcome::Refused(refusal)
        } else {
            let (events, result) = match cmd.op.known() {
                Some(op) => self.logic.perform(op, &cmd, now),
                None => (Events::new(), Err(CommandError::Unsupported)),
            };
            // What did happen is told even when part was refused.
            self.queue_events(now, &events);
            match result {
                Ok(()) => {
                    self.thresholds_set |= cmd.op == Named::Known(Op::SetThreshold);
                    CommandOutcome::Done
                }
                Err(e) => CommandOutcome::Failed(e),
            }
        };
        let error = match outcome {
            CommandOutcome::Failed(e) => Some(e.as_str()),
            CommandOutcome::Refused(r) => Some(r.as_str()),
            CommandOutcome::Done | CommandOutcome::Malformed => None,
        }
        .map(|e| ErrorText::try_from(e).unwrap_or_default());
        let ack = Message::Ack(Ack {
            v: V1,
            seq: self.next_seq(),
            ts: self.ts(now),
            hist: false,
            bdseq: Some(self.bdseq),
            id: cmd.id.clone(),
            ok: error.is_none(),
            error,
        });
        self.queue(&ack, Priority::Event);
        if matches!(outcome, CommandOutcome::Refused(_)) {
            // Nothing changed.
            return outcome;
        }
        // A command changes state the gateway should see now.
        self.queue_sample(now);
        outcome
    }

    /// Whether `cmd` may be carried out: signed with this node's key for
    /// this node, fresh, not expired. Accepting it consumes its counter.
    fn authorise(&mut self, now: Millis, cmd: &Cmd) -> Result<(), Refusal> {
        let Some(c) = &self.credentials else {
            return Err(Refusal::NoKey);
        };
        let to = Recipient {
            site: c.site.as_str(),
            class: self.logic.class(),
            device: c.device.as_str(),
        };
        let clock = self.wall_offset_ms.map(|_| self.ts(now));
        self.guard.check(c.cmd_key.as_ref(), &to, cmd, clock)
    }

    /// Copies the oldest queued payload into `buf` (marked `hist: true` if it
    /// is a replay). Call [`Self::published`] once the broker has it.
    pub fn next_payload(&mut self, buf: &mut [u8]) -> Option<Outgoing> {
        let (entry, bytes) = self.outbox.front()?;
        let len = if entry.replay {
            mark_hist(entry.kind, bytes, buf)
        } else {
            buf.get_mut(..bytes.len())
                .map(|b| b.copy_from_slice(bytes))
                .map(|()| bytes.len())
                .ok_or(protocol::EncodeError::BufferFull(buf.len()))
        };
        if let Ok(len) = len {
            // QoS 1 for everything: a payload leaves the outbox only on PUBACK.
            Some(Outgoing {
                kind: entry.kind,
                qos: 1,
                len,
            })
        } else {
            // Unpublishable: count and drop it rather than block the queue.
            self.stats.encode_errors = self.stats.encode_errors.saturating_add(1);
            self.outbox.pop_front();
            None
        }
    }

    /// The payload from [`Self::next_payload`] reached the broker.
    pub fn published(&mut self) {
        self.outbox.pop_front();
    }
}

/// FNV-1a, 32 bits: a change detector for the birth's `cfg`, not a
/// security measure (nothing is decided on it but "push again").
struct Fnv1a32(u32);

impl Fnv1a32 {
    const fn new() -> Self {
        Fnv1a32(0x811c_9dc5)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// The detail field that carries an event's measurement, named like the metric.
fn value_key(code: protocol::EventCode) -> &'static str {
    use protocol::EventCode as C;
    match code {
        C::OverTemperature => "temp_c",
        C::OverCurrent => "current_a",
        C::Leakage => "leakage_ma",
        C::LowPressure => "network_pressure_mpa",
        C::LowTankLevel => "tank_level_m",
        C::Overspeed => "speed_mps",
        C::SelfTest => "outlet_pressure_mpa",
        _ => "power_w",
    }
}

fn detail_of(e: &NodeEvent) -> Detail {
    let mut d = Detail::new();
    // Names are constants and at most 5 fields: none of these can fail.
    if let Some(p) = e.port {
        let _ = d.set("port", p);
    }
    if let Some(v) = e.value {
        let _ = d.set(value_key(e.code), Scalar::Number(f64::from(v)));
    }
    if e.cut_off {
        let _ = d.set("cut_off", true);
    }
    if let Some(ok) = e.ok {
        let _ = d.set("ok", ok);
    }
    if let Some(s) = e.duration_s {
        let _ = d.set("duration_s", Scalar::Number(f64::from(s)));
    }
    d
}
