//! The device's side of a connection to a centre, as a pure state machine:
//! bytes and a clock in, bytes to write and what became of each upload out.
//!
//! One frame is in flight at a time (stop and wait): an upload waits for the
//! centre's confirm (command 3) with the same serial number; without one
//! within [`SessionConfig::confirm_timeout_ms`] it is sent again, the same
//! bytes and serial, up to [`SessionConfig::tries`] times in all; then the
//! session asks for a new connection ([`Event::Reconnect`]) and sends it
//! again first thing on it. A deny (command 6) ends the upload: sending the
//! same bytes again would be denied again. Urgent uploads (alarms and
//! status changes) go before the others (analog values); heartbeats (the
//! device's running status, type 21) fill silences. The centre's time sync
//! (type 90) is confirmed and moves the clock the session writes into time
//! labels; its reads of the device's status (81) and clock (88) are
//! answered (command 5); any other control or request is denied.

use std::collections::VecDeque;

use crate::data::{DeviceStatus, Unit, device_status, type_flag};
use crate::frame::{Address, CHINA_OFFSET_SECS, Command, Decoder, Frame, Garbage, TimeLabel, Version};

/// How a session behaves.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The device's address (the frames' source).
    pub address: Address,
    /// The centre's address (the frames' destination).
    pub centre: Address,
    /// The protocol version written.
    pub version: Version,
    /// How long to wait for a confirm before sending again (ms).
    pub confirm_timeout_ms: i64,
    /// Sends of one frame on one connection before asking for a new one.
    pub tries: u32,
    /// The longest silence before a heartbeat (ms).
    pub heartbeat_ms: i64,
    /// The UTC offset time labels are written in (seconds).
    pub utc_offset_secs: i32,
}

impl SessionConfig {
    /// The defaults: version 1.0, 5 s per try, 3 tries, a heartbeat a
    /// minute, China's time.
    #[must_use]
    pub fn new(address: Address, centre: Address) -> SessionConfig {
        SessionConfig {
            address,
            centre,
            version: Version::default(),
            confirm_timeout_ms: 5_000,
            tries: 3,
            heartbeat_ms: 60_000,
            utc_offset_secs: CHINA_OFFSET_SECS,
        }
    }
}

/// What the session asks of its connection, and what became of uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Write these bytes.
    Send(Vec<u8>),
    /// The centre confirmed the upload with this id.
    Confirmed(u64),
    /// The centre denied the upload with this id; it is not sent again.
    Denied(u64),
    /// No confirm after every try: close the connection and open a new one
    /// (the unconfirmed frame goes first on it).
    Reconnect,
    /// The centre set the clock: time labels are now written this far from
    /// the caller's clock (ms).
    ClockSet(i64),
    /// A request of the centre, answered (its type flag).
    Answered(u8),
    /// A control command or request the device does not serve, denied
    /// (its command byte and type flag, if it had one).
    Refused(u8, Option<u8>),
    /// Bytes on the line that were no frame.
    Garbage(Garbage),
    /// A frame that was not for this device, or not understood, ignored.
    Ignored(String),
}

#[derive(Clone, Debug)]
struct InFlight {
    id: Option<u64>,
    serial: u16,
    bytes: Vec<u8>,
    sends: u32,
    deadline: i64,
}

#[derive(Clone, Debug)]
struct Queued {
    id: Option<u64>,
    data: Vec<u8>,
}

/// The session (see the module's documentation).
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    serial: u16,
    urgent: VecDeque<Queued>,
    routine: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    decoder: Decoder,
    clock_offset_ms: i64,
    last_sent: i64,
    connected: bool,
    status: u8,
}

impl Session {
    /// A session, not yet connected.
    #[must_use]
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            serial: 0,
            urgent: VecDeque::new(),
            routine: VecDeque::new(),
            in_flight: None,
            decoder: Decoder::new(),
            clock_offset_ms: 0,
            last_sent: i64::MIN,
            connected: false,
            status: device_status::NORMAL,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The device's own status bits ([`device_status`]) its heartbeats and
    /// answers carry.
    pub fn set_status(&mut self, status: u8) {
        self.status = status;
    }

    /// How far time labels are from the caller's clock (ms), as the
    /// centre's last time sync set it.
    #[must_use]
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    /// A time label for `now` on the centre's clock.
    #[must_use]
    pub fn label(&self, now: i64) -> TimeLabel {
        TimeLabel::from_unix_ms(now.saturating_add(self.clock_offset_ms), self.cfg.utc_offset_secs)
    }

    /// Uploads waiting or in flight.
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.urgent.len() + self.routine.len() + usize::from(self.in_flight.as_ref().is_some_and(|f| f.id.is_some()))
    }

    /// Whether an upload with this id is waiting or in flight.
    #[must_use]
    pub fn holds(&self, id: u64) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.id == Some(id))
            || self.urgent.iter().chain(&self.routine).any(|q| q.id == Some(id))
    }

    /// A new connection: a frame left unconfirmed on the last one goes first
    /// (same serial, fresh tries), then what waits; with nothing waiting a
    /// heartbeat tells the centre the device is here.
    pub fn connected(&mut self, now: i64) -> Vec<Event> {
        self.connected = true;
        self.decoder.clear();
        let mut out = Vec::new();
        if let Some(f) = &mut self.in_flight {
            f.sends = 1;
            f.deadline = now.saturating_add(self.cfg.confirm_timeout_ms);
            out.push(Event::Send(f.bytes.clone()));
            self.last_sent = now;
        } else {
            if self.urgent.is_empty() && self.routine.is_empty() {
                self.heartbeat(now);
            }
            self.pump(now, &mut out);
        }
        out
    }

    /// The connection is gone; nothing is sent until [`Session::connected`].
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.decoder.clear();
    }

    /// Queues application data (an encoded [`Unit`]) to send with command 2;
    /// `id` comes back in [`Event::Confirmed`] or [`Event::Denied`].
    pub fn upload(&mut self, id: u64, data: Vec<u8>, urgent: bool, now: i64) -> Vec<Event> {
        let q = Queued { id: Some(id), data };
        if urgent {
            self.urgent.push_back(q);
        } else {
            self.routine.push_back(q);
        }
        let mut out = Vec::new();
        self.pump(now, &mut out);
        out
    }

    /// Bytes from the centre.
    pub fn received(&mut self, bytes: &[u8], now: i64) -> Vec<Event> {
        self.decoder.push(bytes);
        let mut out = Vec::new();
        while let Some(next) = self.decoder.next_frame() {
            match next {
                Ok(frame) => self.frame(&frame, now, &mut out),
                Err(g) => out.push(Event::Garbage(g)),
            }
        }
        self.pump(now, &mut out);
        out
    }

    /// Time passed: resends, reconnects and heartbeats that are due.
    pub fn tick(&mut self, now: i64) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.connected {
            return out;
        }
        if let Some(f) = &mut self.in_flight
            && now >= f.deadline
        {
            if f.sends < self.cfg.tries {
                f.sends += 1;
                f.deadline = now.saturating_add(self.cfg.confirm_timeout_ms);
                out.push(Event::Send(f.bytes.clone()));
                self.last_sent = now;
            } else {
                self.connected = false;
                out.push(Event::Reconnect);
            }
            return out;
        }
        if self.in_flight.is_none()
            && self.urgent.is_empty()
            && self.routine.is_empty()
            && now.saturating_sub(self.last_sent) >= self.cfg.heartbeat_ms
        {
            self.heartbeat(now);
        }
        self.pump(now, &mut out);
        out
    }

    /// When [`Session::tick`] next has something to do.
    #[must_use]
    pub fn next_wake(&self) -> Option<i64> {
        if !self.connected {
            return None;
        }
        Some(match &self.in_flight {
            Some(f) => f.deadline,
            None => self.last_sent.saturating_add(self.cfg.heartbeat_ms),
        })
    }

    fn heartbeat(&mut self, now: i64) {
        let unit = Unit::DeviceStatus(vec![DeviceStatus {
            status: self.status,
            time: self.label(now),
        }]);
        if let Ok(data) = unit.encode() {
            self.routine.push_back(Queued { id: None, data });
        }
    }

    fn next_serial(&mut self) -> u16 {
        let s = self.serial;
        self.serial = self.serial.wrapping_add(1);
        s
    }

    fn frame_bytes(&self, serial: u16, command: Command, data: Vec<u8>, now: i64) -> Option<Vec<u8>> {
        Frame {
            serial,
            version: self.cfg.version,
            time: self.label(now),
            source: self.cfg.address,
            destination: self.cfg.centre,
            command,
            data,
        }
        .encode()
        .ok()
    }

    /// Sends the next upload if the line is free.
    fn pump(&mut self, now: i64, out: &mut Vec<Event>) {
        if !self.connected || self.in_flight.is_some() {
            return;
        }
        while let Some(q) = self.urgent.pop_front().or_else(|| self.routine.pop_front()) {
            let serial = self.next_serial();
            let Some(bytes) = self.frame_bytes(serial, Command::SendData, q.data, now) else {
                // Only data over 1024 bytes fails, and Unit::encode refuses
                // that before it gets here; nothing to send, nothing to wait for.
                if let Some(id) = q.id {
                    out.push(Event::Denied(id));
                }
                continue;
            };
            out.push(Event::Send(bytes.clone()));
            self.last_sent = now;
            self.in_flight = Some(InFlight {
                id: q.id,
                serial,
                bytes,
                sends: 1,
                deadline: now.saturating_add(self.cfg.confirm_timeout_ms),
            });
            return;
        }
    }

    fn answer(&mut self, to: &Frame, command: Command, unit: Option<&Unit>, now: i64, out: &mut Vec<Event>) {
        let data = unit.and_then(|u| u.encode().ok()).unwrap_or_default();
        if let Some(bytes) = self.frame_bytes(to.serial, command, data, now) {
            out.push(Event::Send(bytes));
        }
    }

    fn frame(&mut self, frame: &Frame, now: i64, out: &mut Vec<Event>) {
        if frame.destination != self.cfg.address && frame.destination != Address::ZERO {
            out.push(Event::Ignored(format!("a frame for {}", frame.destination)));
            return;
        }
        match frame.command {
            Command::Confirm | Command::Deny => {
                let Some(f) = self.in_flight.as_ref().filter(|f| f.serial == frame.serial) else {
                    out.push(Event::Ignored(format!(
                        "a {:?} of serial {} that is not in flight",
                        frame.command, frame.serial
                    )));
                    return;
                };
                if let Some(id) = f.id {
                    out.push(if frame.command == Command::Confirm {
                        Event::Confirmed(id)
                    } else {
                        Event::Denied(id)
                    });
                }
                self.in_flight = None;
            }
            Command::Control => match Unit::decode(&frame.data) {
                Ok(Unit::SyncTime(t)) => match t.to_unix_ms(self.cfg.utc_offset_secs) {
                    Some(centre) => {
                        self.clock_offset_ms = centre - now.div_euclid(1000) * 1000;
                        self.answer(frame, Command::Confirm, None, now, out);
                        out.push(Event::ClockSet(self.clock_offset_ms));
                    }
                    None => self.refuse(frame, now, out),
                },
                _ => self.refuse(frame, now, out),
            },
            Command::Request => match Unit::decode(&frame.data) {
                Ok(Unit::ReadDeviceStatus) => {
                    let unit = Unit::DeviceStatus(vec![DeviceStatus {
                        status: self.status,
                        time: self.label(now),
                    }]);
                    self.answer(frame, Command::Reply, Some(&unit), now, out);
                    out.push(Event::Answered(type_flag::READ_DEVICE_STATUS));
                }
                Ok(Unit::ReadDeviceTime) => {
                    let unit = Unit::DeviceTime(self.label(now));
                    self.answer(frame, Command::Reply, Some(&unit), now, out);
                    out.push(Event::Answered(type_flag::READ_DEVICE_TIME));
                }
                _ => self.refuse(frame, now, out),
            },
            Command::SendData | Command::Reply | Command::Other(_) => {
                out.push(Event::Ignored(format!("a {:?} from the centre", frame.command)));
            }
        }
    }

    fn refuse(&mut self, frame: &Frame, now: i64, out: &mut Vec<Event>) {
        self.answer(frame, Command::Deny, None, now, out);
        out.push(Event::Refused(frame.command.into(), frame.data.first().copied()));
    }
}
