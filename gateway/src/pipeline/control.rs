//! The controls the HTTP side, the ticker and the broker side send the
//! pipeline: time passing, the broker coming and going, an alert's
//! acknowledgement and a work order's step (answered once stored), a
//! delivery's outcome.

use crate::pipeline::settle::{delivered, settle};
use crate::pipeline::{Pipeline, check_disk};

/// Handles one control; whether it asks the pipeline to stop.
pub(crate) fn control(
    p: &mut Pipeline<'_>,
    c: crate::ops::alerts::Control,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
) -> bool {
    use crate::ops::alerts::{Control, Refusal};
    match c {
        Control::Stop => return true,
        // Taken by the pipeline's loop, which owns the lanes.
        Control::Sync(reply) => {
            let _ = reply.send(());
        }
        Control::Tick => {
            check_disk(p);
            p.engine.tick(clock, effects);
            p.judgement.tick(&mut p.engine, clock, effects);
            p.desk.tick(clock, outs);
            p.shared.alerts().watch_devices(p.shared.registry(), clock);
            p.commands
                .tick(clock, p.store.conn(), &mut p.ledger, p.shared.metrics());
        }
        Control::Uplink(up) => p.engine.uplink(clock, up, effects),
        Control::Delivered(o) => delivered(p, clock, &o),
        Control::Upstream(o) => {
            let (change, record) = crate::upstream::Upstream::outcome(clock, &o, p.shared.metrics());
            p.ledger.upstream_change(change);
            if let Some(r) = record {
                p.ledger.record(r);
            }
        }
        Control::Command { request, known, reply } => {
            let answer = p.commands.request(
                clock,
                p.store.conn(),
                known,
                *request,
                &mut p.ledger,
                p.shared.metrics(),
            );
            // Stored (and then sent) before the answer.
            let stored = settle(p, clock, effects, outs, false);
            let _ = reply.send(match (answer, stored) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(crate::ops::commands::Refusal::NotStored(e)),
                (Ok(c), Ok(())) => Ok(c),
            });
        }
        Control::Credential { change, record, reply } => {
            p.ledger.stage_credential(*change);
            if let Some(r) = record {
                p.ledger.record(r);
            }
            let _ = reply.send(settle(p, clock, effects, outs, false));
        }
        Control::Ack { id, by, reply } => {
            let answer = p.engine.ack(clock, id, &by, effects);
            // Stored before the answer: an acknowledged ack survives a crash.
            let stored = settle(p, clock, effects, outs, false);
            let _ = reply.send(match (answer, stored) {
                (Err(e), _) => Err(Refusal::Refused(e)),
                (Ok(_), Err(e)) => Err(Refusal::NotStored(e)),
                (Ok(v), Ok(())) => Ok(v),
            });
        }
        Control::Step {
            id,
            step,
            by,
            note,
            reply,
        } => {
            let answer = p.desk.step(clock, id, step, &by, note, outs);
            let stored = settle(p, clock, effects, outs, false);
            let _ = reply.send(match (answer, stored) {
                (Err(e), _) => Err(Refusal::Refused(e)),
                (Ok(_), Err(e)) => Err(Refusal::NotStored(e)),
                (Ok(o), Ok(())) => Ok(o),
            });
        }
    }
    false
}
