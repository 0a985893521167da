//! A plain sensor node: samples and nothing else. What a vendor's lift
//! controller or pump cabinet sends through a simple telemetry box, in the
//! contract's canonical metrics as JSON, with no judgement of its own — so
//! every alert about it is the gateway's (the contract: "an alert never
//! depends on the node being smart").
//!
//! It reports by exception, as such boxes do: a sample whenever a contact or
//! a code changes (a door zone passed, the drive stopping), and at least
//! every interval; analog values ride along. It is also the only way the
//! simulation reports what only a controller knows (the safety chain, the
//! service mode, the controller's floor count, the fire alarm panel).

use std::collections::VecDeque;

use firmware::hal::Millis;
use firmware::node::Outgoing;
use protocol::metric::{Metric, MetricInfo as _, Value};
use protocol::{Birth, Data, Death, EncodeError, Format, Kind, Message, Named, Timestamp, V1};

use crate::device::NodeLink;

/// One reading: a canonical metric and its value.
pub type Reading = (Metric, Value);

/// The plain sensor node of one device.
#[derive(Debug)]
pub struct SensorNode {
    interval_ms: u64,
    /// The node's wall clock at virtual 0 (true time plus any skew).
    epoch_ms: i64,
    bdseq: u32,
    seq: u32,
    link_up: bool,
    last_sent: Option<u64>,
    /// The discrete readings of the last sample (contacts, codes).
    last_discrete: Vec<(Metric, f64)>,
    /// Samples taken, not yet handed to the link (kept while it is down).
    queue: VecDeque<Data>,
    facts: BirthFacts,
    /// The user name and password it logs in with, if provisioned.
    login: Option<(String, String)>,
}

/// What the birth declares about the equipment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BirthFacts {
    /// Elevator: rated speed.
    pub rated_speed_mps: Option<f64>,
    /// Elevator: floors served.
    pub floors: Option<u16>,
}

/// Samples kept while the link is down: an hour at one a second.
const QUEUE: usize = 3600;

fn discrete(m: Metric) -> bool {
    matches!(m.kind(), protocol::ValueKind::Bool | protocol::ValueKind::Code { .. }) || m == Metric::Floor
}

impl SensorNode {
    /// A node reporting at least every `interval_s`, its clock reading
    /// `epoch_ms` at virtual 0.
    #[must_use]
    pub fn new(interval_s: u32, epoch_ms: i64, facts: BirthFacts) -> SensorNode {
        SensorNode {
            interval_ms: u64::from(interval_s.max(1)) * 1000,
            epoch_ms,
            bdseq: 0,
            seq: 0,
            link_up: false,
            last_sent: None,
            last_discrete: Vec::new(),
            queue: VecDeque::new(),
            facts,
            login: None,
        }
    }

    /// Sets the node's clock: it reads `epoch_ms` at virtual 0.
    pub fn set_epoch(&mut self, epoch_ms: i64) {
        self.epoch_ms = epoch_ms;
    }

    fn ts(&self, now: u64) -> Timestamp {
        Timestamp::from_millis(self.epoch_ms + i64::try_from(now).unwrap_or(i64::MAX))
    }

    /// Looks at the equipment at `now`: queues a sample if a contact or code
    /// changed, or the interval is up.
    pub fn sample(&mut self, now: u64, readings: &[Reading]) {
        let disc: Vec<(Metric, f64)> = readings
            .iter()
            .filter(|(m, _)| discrete(*m))
            .map(|(m, v)| (*m, v.to_number()))
            .collect();
        let due = self.last_sent.is_none_or(|t| now.saturating_sub(t) >= self.interval_ms);
        if !due && disc == self.last_discrete {
            return;
        }
        self.last_discrete = disc;
        self.last_sent = Some(now);
        self.seq = self.seq.wrapping_add(1);
        let mut data = Data::new(self.seq, self.ts(now));
        data.bdseq = Some(self.bdseq);
        for (m, v) in readings {
            let _ = data.m.set(Named::Known(*m), *v);
        }
        if self.queue.len() >= QUEUE {
            self.queue.pop_front();
        }
        self.queue.push_back(data);
    }
}

impl SensorNode {
    /// Logs in as `username` with `password` (a provisioned device).
    #[must_use]
    pub fn with_login(mut self, username: String, password: String) -> Self {
        self.login = Some((username, password));
        self
    }
}

impl NodeLink for SensorNode {
    fn login(&self) -> Option<(String, String)> {
        self.login.clone()
    }

    fn will(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        // The will of the session the next connection starts.
        let death = Death {
            v: V1,
            bdseq: self.bdseq.wrapping_add(1),
        };
        protocol::encode(&Message::Death(death), Format::Json, buf)
    }

    fn on_connect(&mut self, now: Millis, buf: &mut [u8]) -> Result<Outgoing, EncodeError> {
        self.bdseq = self.bdseq.wrapping_add(1);
        self.link_up = true;
        let birth = Birth {
            v: V1,
            seq: 0,
            ts: self.ts(now.0),
            hist: false,
            bdseq: self.bdseq,
            fw: "sensor-1.0".try_into().unwrap_or_default(),
            model: "HIL-SENSOR".try_into().unwrap_or_default(),
            cfg: "hil".try_into().unwrap_or_default(),
            interval_s: u32::try_from(self.interval_ms / 1000).unwrap_or(u32::MAX),
            rated_speed_mps: self.facts.rated_speed_mps,
            floors: self.facts.floors,
            ports: None,
        };
        let len = protocol::encode(&Message::Birth(birth), Format::Json, buf)?;
        Ok(Outgoing {
            kind: Kind::Birth,
            qos: 1,
            len,
        })
    }

    fn on_disconnect(&mut self) {
        self.link_up = false;
    }

    fn link_up(&self) -> bool {
        self.link_up
    }

    fn next_payload(&mut self, buf: &mut [u8]) -> Option<Outgoing> {
        if !self.link_up {
            return None;
        }
        let mut data = self.queue.pop_front()?;
        // Samples of an earlier session go as history of this one.
        if data.bdseq != Some(self.bdseq) {
            data.bdseq = Some(self.bdseq);
            data.hist = true;
        }
        let len = protocol::encode(&Message::Data(data), Format::Json, buf).ok()?;
        Some(Outgoing {
            kind: Kind::Data,
            qos: 1,
            len,
        })
    }

    fn published(&mut self) {
        // The sample left the queue when it was handed out: the link's QoS 1
        // session has it from there.
    }

    fn on_command(&mut self, _now: Millis, _payload: &[u8]) {
        // A plain sensor takes no commands.
    }
}
