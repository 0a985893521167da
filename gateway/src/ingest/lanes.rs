//! The lanes into the pipeline: a priority lane (events, births, acks), a
//! bulk lane (data, deaths) and the control channel, taken in that order.
//!
//! Backpressure: when the pipeline is behind, the sender waits instead of
//! dropping, so a broker holds QoS 1 messages and a node's connection stops
//! being read; nothing is dropped between the broker and the store.
//! Deaths travel with the data so that a will is never judged before the
//! samples the node sent ahead of it.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::ingest::acks::Done;
use crate::metrics::Metrics;

/// The topic filter of everything nodes send (commands are filtered out on ingest).
pub const FILTER: &str = "fm/v1/+/+/+/+";

/// Bulk lane length (telemetry).
pub const QUEUE: usize = 8192;

/// Priority lane length (events, births, acks).
pub const PRIORITY_QUEUE: usize = 1024;

/// Control channel length (HTTP acknowledgements, ticks, broker state).
pub const CONTROL_QUEUE: usize = 256;

/// A publish on its way to the pipeline, acknowledged there once what it
/// caused is committed.
pub(crate) struct Publish {
    pub(crate) topic: String,
    pub(crate) payload: bytes::Bytes,
    pub(crate) received_ms: i64,
    /// How to acknowledge it (QoS 1 and 2).
    pub(crate) ack: Option<Done>,
}

/// What the pipeline handles: a publish to decode, or a message the Modbus
/// poller built.
pub(crate) enum Input {
    Mqtt(Publish),
    Polled(Box<crate::ingest::Incoming>),
    /// A message mapped from another protocol (Sparkplug B), with the
    /// acknowledgement of the publish it came from (on the last of them).
    Mapped(Box<crate::ingest::Incoming>, Option<Done>),
}

/// The lane of a message kind: events and births are never queued behind
/// bulk telemetry; deaths stay in order with the data before them.
#[must_use]
pub fn priority_lane(kind: &str) -> bool {
    !matches!(kind, "data" | "death")
}

/// The two lanes into the pipeline.
#[derive(Clone)]
pub(crate) struct Lanes {
    pub(crate) priority: mpsc::Sender<Input>,
    pub(crate) bulk: mpsc::Sender<Input>,
}

impl Lanes {
    /// Into the lane of a message `kind`; whether the pipeline still takes input.
    pub(crate) async fn send(&self, kind: &str, input: Input, m: &Metrics) -> bool {
        self.send_to(priority_lane(kind), input, m).await
    }

    /// Into the priority lane or the bulk lane; waits for room (back-pressure).
    pub(crate) async fn send_to(&self, priority: bool, input: Input, m: &Metrics) -> bool {
        m.queue_depth.inc();
        if priority {
            m.priority_queue_depth.inc();
            self.priority.send(input).await.is_ok()
        } else {
            self.bulk.send(input).await.is_ok()
        }
    }
}

/// The pipeline's inputs, taken in priority order.
pub(crate) struct Receivers {
    pub(crate) control: mpsc::Receiver<crate::ops::alerts::Control>,
    pub(crate) priority: mpsc::Receiver<Input>,
    pub(crate) bulk: mpsc::Receiver<Input>,
}

pub(crate) enum Next {
    Control(crate::ops::alerts::Control),
    Message(Input, bool),
    /// Nothing came before the deadline (a failed commit is due again).
    Wake,
}

impl Receivers {
    /// What is queued, without waiting: controls first, then the priority
    /// lane, then bulk (when `bulk` is open).
    pub(crate) fn try_next(&mut self, bulk: bool) -> Option<Next> {
        if let Ok(c) = self.control.try_recv() {
            return Some(Next::Control(c));
        }
        if let Ok(i) = self.priority.try_recv() {
            return Some(Next::Message(i, true));
        }
        if bulk && let Ok(i) = self.bulk.try_recv() {
            return Some(Next::Message(i, false));
        }
        None
    }

    /// The next input, waiting for one (until `until`, if given): controls
    /// first, then the priority lane, then bulk (when `bulk` is open: while
    /// too many samples wait for a failing store, telemetry stays with the
    /// broker and events still come through). `None` once every sender is gone.
    pub(crate) fn next(&mut self, rt: &tokio::runtime::Handle, bulk: bool, until: Option<Instant>) -> Option<Next> {
        if let Some(n) = self.try_next(bulk) {
            return Some(n);
        }
        rt.block_on(async {
            let deadline = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(c) = self.control.recv() => Some(Next::Control(c)),
                Some(i) = self.priority.recv() => Some(Next::Message(i, true)),
                Some(i) = self.bulk.recv(), if bulk => Some(Next::Message(i, false)),
                () = deadline, if until.is_some() => Some(Next::Wake),
                else => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Input, Next, Receivers};
    use tokio::sync::mpsc;

    pub(crate) fn polled(kind: &str, seq: u32) -> Input {
        let payload = match kind {
            "data" => format!(r#"{{"v":1,"seq":{seq},"ts":0,"m":{{"pump_fault":false}}}}"#),
            _ => format!(r#"{{"v":1,"seq":{seq},"ts":0,"code":"fire_alarm","active":true}}"#),
        };
        let incoming = crate::ingest::ingest(&format!("fm/v1/s/firepump/P/{kind}"), payload.as_bytes(), 0)
            .unwrap_or_else(|r| panic!("{r:?}"));
        Input::Polled(Box::new(incoming))
    }

    pub(crate) fn label(n: Option<Next>) -> String {
        match n {
            Some(Next::Control(c)) => format!("control {c:?}"),
            Some(Next::Message(Input::Polled(i), lane)) => {
                format!(
                    "{} {} seq {:?}",
                    if lane { "priority" } else { "bulk" },
                    i.topic.kind,
                    i.message.header().seq
                )
            }
            Some(Next::Message(Input::Mqtt(_) | Input::Mapped(..), _)) => "mqtt".into(),
            Some(Next::Wake) => "wake".into(),
            None => "closed".into(),
        }
    }

    /// A fire alarm queued behind bulk telemetry is taken before it, and an
    /// acknowledgement (a control) before both; each lane keeps its order.
    #[test]
    pub(crate) fn controls_then_the_priority_lane_then_bulk() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (ctx, control) = mpsc::channel(4);
        let (ptx, priority) = mpsc::channel(4);
        let (btx, bulk) = mpsc::channel(8);
        for seq in 1..=3 {
            btx.try_send(polled("data", seq))
                .unwrap_or_else(|_| panic!("bulk full"));
        }
        ptx.try_send(polled("event", 10))
            .unwrap_or_else(|_| panic!("priority full"));
        ptx.try_send(polled("event", 11))
            .unwrap_or_else(|_| panic!("priority full"));
        ctx.try_send(crate::ops::alerts::Control::Tick)
            .unwrap_or_else(|_| panic!("control full"));
        let mut rx = Receivers {
            control,
            priority,
            bulk,
        };
        let order: Vec<String> = (0..6).map(|_| label(rx.next(rt.handle(), true, None))).collect();
        assert_eq!(
            order,
            [
                "control Tick",
                "priority event seq Some(10)",
                "priority event seq Some(11)",
                "bulk data seq Some(1)",
                "bulk data seq Some(2)",
                "bulk data seq Some(3)",
            ]
        );
        drop((ctx, ptx, btx));
        assert_eq!(label(rx.next(rt.handle(), true, None)), "closed");
    }

    /// While the bulk lane is closed (too many samples wait for a failing
    /// store) events still come through, telemetry stays queued, and a
    /// deadline wakes the pipeline to try the store again.
    #[test]
    pub(crate) fn a_closed_bulk_lane_lets_events_through_and_a_deadline_wakes() {
        // A handle's block_on drives timers only on a multi-thread runtime
        // (the gateway's own).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (_ctx, control) = mpsc::channel(4);
        let (ptx, priority) = mpsc::channel(4);
        let (btx, bulk) = mpsc::channel(4);
        btx.try_send(polled("data", 1)).unwrap_or_else(|_| panic!("bulk full"));
        ptx.try_send(polled("event", 2))
            .unwrap_or_else(|_| panic!("priority full"));
        let mut rx = Receivers {
            control,
            priority,
            bulk,
        };
        let soon = Some(std::time::Instant::now() + std::time::Duration::from_millis(20));
        assert_eq!(label(rx.next(rt.handle(), false, soon)), "priority event seq Some(2)");
        assert_eq!(label(rx.next(rt.handle(), false, soon)), "wake");
        assert_eq!(label(rx.next(rt.handle(), true, None)), "bulk data seq Some(1)");
    }
}
