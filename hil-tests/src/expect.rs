//! Judging a run: each expectation of the scenario against the [`Journal`],
//! with the measured time next to the allowed one, so a lab sees not only
//! that a trapped passenger was detected but how close to its 25 s it was.

use std::time::Duration;

use serde_json::Value;

use crate::bench::{Journal, anchor_text};
use crate::scenario::{Anchor, Expect, Expectation};

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What was expected, in words.
    pub what: String,
    /// Its line in the scenario file.
    pub line: usize,
    /// Whether it held.
    pub passed: bool,
    /// The time measured (detection, dispatch, cut-off).
    pub measured: Option<Duration>,
    /// The time allowed.
    pub limit: Option<Duration>,
    /// Why it failed, or what was seen.
    pub detail: String,
}

/// Judges every expectation, plus the run's own health: the records chain
/// verifies, no stream event was missed, no step was refused.
#[must_use]
pub fn judge(expects: &[Expect], j: &Journal) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = expects.iter().map(|e| one(e, j)).collect();
    let records = match j.records {
        Some((true, n)) => (true, format!("{n} records, chain and checkpoints verify")),
        Some((false, n)) => (false, format!("{n} records: the chain does not verify")),
        None => (false, "the records could not be read".into()),
    };
    out.push(Outcome {
        what: "supervision records verify".into(),
        line: 0,
        passed: records.0,
        measured: None,
        limit: None,
        detail: records.1,
    });
    if j.lagged > 0 || !j.notes.is_empty() {
        out.push(Outcome {
            what: "the bench saw everything".into(),
            line: 0,
            passed: j.lagged == 0 && j.notes.iter().all(|n| !n.starts_with("line ")),
            measured: None,
            limit: None,
            detail: if j.lagged > 0 {
                format!("{} stream events missed; {}", j.lagged, j.notes.join("; "))
            } else {
                j.notes.join("; ")
            },
        });
    }
    out
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When an anchor held, scenario ms; `None` if it never did.
fn anchor_at(j: &Journal, device: &str, port: Option<u8>, a: &Anchor) -> Option<u64> {
    match a {
        Anchor::Start => Some(0),
        Anchor::Label(l) => j.labels.get(l).copied(),
        _ => j.conditions.get(&(device.to_owned(), port, anchor_text(a))).copied(),
    }
}

/// Scenario ms of a gateway timestamp.
fn rel(j: &Journal, epoch_ms: i64) -> u64 {
    u64::try_from(epoch_ms - j.start_ms).unwrap_or(0)
}

/// The gateway's name for a device of the scenario: a bus's root cause is
/// `bus:<its serial path>`, which the bench chose.
fn gateway_id<'a>(j: &'a Journal, device: &'a str) -> &'a str {
    device
        .strip_prefix("bus:")
        .and_then(|b| j.buses.get(b))
        .map_or(device, String::as_str)
}

fn matches_alert(j: &Journal, a: &Value, code: &str, device: &str, port: Option<u8>) -> bool {
    a["code"] == code
        && a["device"] == gateway_id(j, device)
        && port.is_none_or(|p| a["port"].as_u64() == Some(u64::from(p)))
}

fn outcome(what: String, line: usize, passed: bool, detail: String) -> Outcome {
    Outcome {
        what,
        line,
        passed,
        measured: None,
        limit: None,
        detail,
    }
}

#[allow(clippy::too_many_lines)] // one arm per kind of expectation
fn one(e: &Expect, j: &Journal) -> Outcome {
    let line = e.line;
    match &e.what {
        Expectation::Alert {
            code,
            device,
            port,
            after,
            within,
            inhibited_by,
        } => {
            let what = format!(
                "alert `{code}` on {device}{} within {} of {}{}",
                port.map(|p| format!(" port {p}")).unwrap_or_default(),
                humantime::format_duration(*within),
                anchor_text(after),
                inhibited_by
                    .as_ref()
                    .map(|b| format!(", inhibited by {b}"))
                    .unwrap_or_default()
            );
            timed(what, line, *within, anchor_at(j, device, *port, after), |from| {
                let fired = j.alerts.iter().find(|c| {
                    c.change == "fired"
                        && matches_alert(j, &c.alert, code, device, *port)
                        && c.alert["fired_at"].as_i64().is_some_and(|t| rel(j, t) >= from)
                })?;
                let at = rel(j, fired.alert["fired_at"].as_i64().unwrap_or_default());
                let by = fired.alert["inhibited_by"].as_str();
                let ok = match (inhibited_by, by) {
                    (None, None) => Ok(()),
                    (None, Some(b)) => Err(format!("it fired inhibited by {b}, so nobody was told")),
                    (Some(want), Some(b)) if b.starts_with(want.as_str()) => Ok(()),
                    (Some(want), b) => Err(format!("inhibited by {b:?}, not {want}")),
                };
                Some((at, ok))
            })
        }
        Expectation::Resolved {
            code,
            device,
            after,
            within,
        } => {
            let what = format!(
                "alert `{code}` on {device} resolved within {} of {}",
                humantime::format_duration(*within),
                anchor_text(after)
            );
            timed(what, line, *within, anchor_at(j, device, None, after), |from| {
                let c = j.alerts.iter().find(|c| {
                    c.change == "resolved"
                        && matches_alert(j, &c.alert, code, device, None)
                        && c.alert["resolved_at"].as_i64().is_some_and(|t| rel(j, t) >= from)
                })?;
                Some((rel(j, c.alert["resolved_at"].as_i64().unwrap_or_default()), Ok(())))
            })
        }
        Expectation::Order {
            code,
            device,
            contractor,
            after,
            within,
            respond,
            arrive,
            complete,
            escalated_to,
        } => {
            let what = format!(
                "order `{code}` on {device} to {contractor} within {} of {}{}",
                humantime::format_duration(*within),
                anchor_text(after),
                arrive
                    .map(|a| format!(", arrive by {}", humantime::format_duration(a)))
                    .unwrap_or_default()
            );
            timed(what, line, *within, anchor_at(j, device, None, after), |from| {
                let first = j.orders.iter().map(|v| &v["order"]).find(|o| {
                    o["code"] == code.as_str()
                        && o["device"] == gateway_id(j, device)
                        && o["created_at"].as_i64().is_some_and(|t| rel(j, t) >= from)
                })?;
                let created = first["created_at"].as_i64().unwrap_or_default();
                let id = first["id"].clone();
                let last = j
                    .orders
                    .iter()
                    .map(|v| &v["order"])
                    .rfind(|o| o["id"] == id)
                    .unwrap_or(first);
                let mut problems = Vec::new();
                let first_holder = first["primary"].as_str().or(first["contractor"].as_str());
                if first_holder != Some(contractor.as_str()) {
                    problems.push(format!("dispatched to {first_holder:?}"));
                }
                for (name, want) in [("respond", respond), ("arrive", arrive), ("complete", complete)] {
                    if let Some(want) = want {
                        let got = first["deadlines"][name].as_i64().map(|d| d - created);
                        if got != i64::try_from(want.as_millis()).ok() {
                            problems.push(format!(
                                "{name} deadline {} after dispatch",
                                got.map_or_else(
                                    || "none".into(),
                                    |g| humantime::format_duration(Duration::from_millis(g.unsigned_abs())).to_string()
                                )
                            ));
                        }
                    }
                }
                if let Some(b) = escalated_to
                    && last["contractor"].as_str() != Some(b.as_str())
                {
                    problems.push(format!(
                        "held by {:?} at the end, not re-dispatched to {b}",
                        last["contractor"].as_str()
                    ));
                }
                let ok = if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                };
                Some((rel(j, created), ok))
            })
        }
        Expectation::Cut {
            device,
            port,
            after,
            within,
            until,
        } => {
            let what = format!(
                "{device} {} cut by the node within {} of {}{}",
                port.map_or_else(|| "every port".into(), |p| format!("port {p}")),
                humantime::format_duration(*within),
                anchor_text(after),
                until.as_ref().map(|u| format!(", until {u}")).unwrap_or_default()
            );
            let to = until
                .as_ref()
                .map_or(Some(u64::MAX), |l| j.labels.get(l).copied())
                .unwrap_or(0);
            let ports: Vec<u8> = j
                .relays
                .keys()
                .filter(|(d, p)| d == device && port.is_none_or(|want| want == *p))
                .map(|(_, p)| *p)
                .collect();
            timed(what, line, *within, anchor_at(j, device, *port, after), |from| {
                if ports.is_empty() {
                    return Some((from, Err("no such port on the bench".into())));
                }
                let mut latest = from;
                for p in &ports {
                    let changes = &j.relays[&(device.clone(), *p)];
                    // Its state when the condition began, then the first cut after.
                    let state_at = changes.iter().rfind(|(t, _)| *t <= from).is_some_and(|(_, on)| *on);
                    let cut_at = if state_at {
                        changes.iter().find(|(t, on)| *t > from && !on).map(|(t, _)| *t)?
                    } else {
                        from
                    };
                    if changes.iter().any(|(t, on)| *t > cut_at && *t < to && *on) {
                        return Some((cut_at, Err(format!("port {p} was switched on again"))));
                    }
                    latest = latest.max(cut_at);
                }
                Some((latest, Ok(())))
            })
        }
        Expectation::Ack {
            device,
            id,
            ok,
            error,
            after,
            within,
        } => {
            let what = format!(
                "{device} acks `{id}` {} within {} of {}",
                match (ok, error) {
                    (true, _) => "ok".to_owned(),
                    (false, Some(e)) => format!("refused: {e}"),
                    (false, None) => "refused".to_owned(),
                },
                humantime::format_duration(*within),
                anchor_text(after)
            );
            timed(what, line, *within, anchor_at(j, device, None, after), |from| {
                let a = j.acks.get(device)?.iter().find(|a| a.id == *id && a.at_ms >= from)?;
                let right = a.ok == *ok && error.as_ref().is_none_or(|e| a.error.as_ref() == Some(e));
                let said = format!(
                    "the node said ok: {}{}",
                    a.ok,
                    a.error.as_ref().map(|e| format!(", {e}")).unwrap_or_default()
                );
                Some((a.at_ms, if right { Ok(()) } else { Err(said) }))
            })
        }
        Expectation::Duty {
            duty,
            device,
            by,
            after,
            within,
        } => {
            let what = format!(
                "duty `{duty}` on {device} done{} within {} of {}",
                by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
                humantime::format_duration(*within),
                anchor_text(after)
            );
            timed(what, line, *within, anchor_at(j, device, None, after), |from| {
                let done = j.orders.iter().map(|v| &v["order"]).find(|o| {
                    o["kind"] == "preventive"
                        && o["code"] == duty.as_str()
                        && o["device"] == gateway_id(j, device)
                        && o["status"] == "completed"
                        && o["closed_at"].as_i64().is_some_and(|t| rel(j, t) >= from)
                })?;
                let at = rel(j, done["closed_at"].as_i64().unwrap_or_default());
                let who = done["steps"]
                    .as_array()
                    .and_then(|s| s.last())
                    .and_then(|s| s["by"]["name"].as_str().or(s["by"].as_str()))
                    .unwrap_or_default()
                    .to_owned();
                let verdict = match by {
                    Some(b) if *b != who => Err(format!("completed by {who:?}")),
                    _ => Ok(()),
                };
                Some((at, verdict))
            })
        }
        Expectation::Command {
            name,
            device,
            status,
            error,
            hold,
            after,
            within,
        } => command(
            j,
            line,
            (name, device.as_deref()),
            (status, error.as_deref(), *hold),
            after,
            *within,
        ),
        Expectation::Powered {
            device,
            port,
            after,
            until,
        } => {
            let what = format!(
                "{device} port {port} stays powered from {} to {}",
                anchor_text(after),
                until.as_deref().unwrap_or("the end")
            );
            let from = anchor_at(j, device, Some(*port), after);
            let to = match until {
                Some(l) => j.labels.get(l).copied(),
                None => Some(j.ran_ms),
            };
            let verdict = match (from, to, j.relays.get(&(device.clone(), *port))) {
                (_, _, None) => Err("no such port on the bench".to_owned()),
                (None, _, _) | (_, None, _) => Err("what it measures from never happened".to_owned()),
                (Some(from), Some(to), Some(changes)) => {
                    let on_at_start = changes.iter().rfind(|(t, _)| *t <= from).is_some_and(|(_, on)| *on);
                    match changes.iter().find(|(t, on)| *t > from && *t <= to && !on) {
                        _ if !on_at_start => Err(format!("already off at {} s", from / 1000)),
                        Some((t, _)) => Err(format!("cut at {:.1} s", Duration::from_millis(*t).as_secs_f64())),
                        None => Ok(()),
                    }
                }
            };
            let passed = verdict.is_ok();
            outcome(what, line, passed, verdict.err().unwrap_or_default())
        }
        Expectation::NoAlerts { devices, except } => {
            let fired = j
                .alerts
                .iter()
                .filter(|c| c.change == "fired" && c.alert["inhibited_by"].is_null())
                .map(|c| &c.alert);
            let bad = names_in_scope(j, fired, devices, except);
            let detail = if bad.is_empty() {
                "none fired".into()
            } else {
                format!("fired: {}", bad.join(", "))
            };
            outcome(scoped("no alert on", devices, except), line, bad.is_empty(), detail)
        }
        Expectation::NoNotifications { devices, except } => {
            let told = names_in_scope(j, j.notified.iter(), devices, except);
            let detail = if told.is_empty() {
                format!("{} notified in all", j.notified.len())
            } else {
                format!("told of: {}", told.join(", "))
            };
            outcome(
                scoped("nobody told of an alert on", devices, except),
                line,
                told.is_empty(),
                detail,
            )
        }
        Expectation::Inhibited { devices, by } => {
            let theirs = |a: &Value| devices.iter().any(|d| a["device"] == gateway_id(j, d));
            let ids: Vec<&Value> = j
                .alerts
                .iter()
                .filter(|c| c.change == "fired" && theirs(&c.alert))
                .map(|c| &c.alert["id"])
                .collect();
            // Inhibited when it fired or as soon as its parent failed after.
            let loud: Vec<String> = ids
                .iter()
                .filter(|id| {
                    !j.alerts.iter().any(|c| {
                        &&c.alert["id"] == *id
                            && c.alert["inhibited_by"]
                                .as_str()
                                .is_some_and(|b| b.starts_with(by.as_str()))
                    })
                })
                .filter_map(|id| {
                    j.alerts
                        .iter()
                        .find(|c| &&c.alert["id"] == id)
                        .map(|c| alert_name(j, &c.alert))
                })
                .collect();
            let told: Vec<String> = j
                .notified
                .iter()
                .filter(|a| theirs(a))
                .map(|a| alert_name(j, a))
                .collect();
            let detail = match (loud.is_empty(), told.is_empty()) {
                (true, true) => format!("{} alerts of theirs, every one inhibited, none notified", ids.len()),
                (false, _) => format!("not inhibited by {by}: {}", loud.join(", ")),
                (true, false) => format!("notified: {}", told.join(", ")),
            };
            outcome(
                format!("nobody told of {} (inhibited by {by})", devices.join(", ")),
                line,
                loud.is_empty() && told.is_empty(),
                detail,
            )
        }
        Expectation::NoLoss => {
            let sent: u64 = j.links.values().map(|l| l.published).sum();
            let dropped: u64 = j.links.values().map(|l| l.dropped).sum();
            let lost: u64 = j.registry.iter().map(|d| d.lost).sum();
            let passed = lost == 0 && dropped == 0 && j.ingested >= sent;
            outcome(
                "no message lost".into(),
                line,
                passed,
                format!(
                    "{sent} published, {} ingested, {lost} counted missing by the gateway",
                    j.ingested
                ),
            )
        }
        Expectation::Lost { device, at_least } => {
            let lost = j
                .registry
                .iter()
                .find(|d| &d.key.device == device)
                .map_or(0, |d| d.lost);
            let dropped = j.links.get(device).map_or(0, |l| l.dropped);
            outcome(
                format!("the gateway counts at least {at_least} of {device}'s messages missing"),
                line,
                lost >= *at_least,
                format!("{dropped} dropped on the link, {lost} counted missing"),
            )
        }
        Expectation::Skew {
            device,
            seconds,
            tolerance,
        } => {
            let skew = j
                .registry
                .iter()
                .find(|d| &d.key.device == device)
                .and_then(|d| d.skew_ms);
            // The registry's skew is receive time minus device time.
            let off_s = skew.map(|s| -s / 1000);
            let passed = off_s.is_some_and(|o| (o - seconds).abs() <= *tolerance);
            outcome(
                format!("{device}'s clock shown {seconds:+} s off (± {tolerance} s)"),
                line,
                passed,
                off_s.map_or_else(|| "no skew known".into(), |o| format!("shown {o:+} s off")),
            )
        }
    }
}

/// The names of `alerts` on `devices` (all when empty) but those with a
/// code in `except`.
fn names_in_scope<'a>(
    j: &Journal,
    alerts: impl Iterator<Item = &'a Value>,
    devices: &[String],
    except: &[String],
) -> Vec<String> {
    alerts
        .filter(|a| devices.is_empty() || devices.iter().any(|d| a["device"] == gateway_id(j, d)))
        .filter(|a| !except.iter().any(|x| a["code"] == x.as_str()))
        .map(|a| alert_name(j, a))
        .collect()
}

/// "no alert on EL-1, EL-2 but offline", in words.
fn scoped(what: &str, devices: &[String], except: &[String]) -> String {
    let scope = if devices.is_empty() {
        "any device".into()
    } else {
        devices.join(", ")
    };
    if except.is_empty() {
        format!("{what} {scope}")
    } else {
        format!("{what} {scope} but {}", except.join(", "))
    }
}

fn alert_name(j: &Journal, a: &Value) -> String {
    format!(
        "{}/{}{} at {} s",
        a["device"].as_str().unwrap_or("?"),
        a["code"].as_str().unwrap_or("?"),
        a["port"].as_u64().map(|p| format!(" port {p}")).unwrap_or_default(),
        a["fired_at"].as_i64().map_or(0, |t| rel(j, t)) / 1000
    )
}

/// A timed expectation: finds the event at or after the anchor with `find`
/// (its scenario ms and whether it is right), and compares the time taken
/// with `within`.
/// A command the gateway sent: found by its `api_command` step's name, or
/// by its op (the first the device's node was handed after `after`); then
/// judged on what the gateway's API said of it at the end.
fn command(
    j: &Journal,
    line: usize,
    (name, device): (&str, Option<&str>),
    (status, error, hold): (&str, Option<&str>, Option<bool>),
    after: &Anchor,
    within: Option<Duration>,
) -> Outcome {
    let to = device.map(|d| format!(" to {d}")).unwrap_or_default();
    let api = j.api.get(name);
    let since = match (api, after) {
        (Some(_), Anchor::Start) => "its request".to_owned(),
        (_, a) => anchor_text(a),
    };
    let what = format!(
        "the gateway's command `{name}`{}{to} ends {status}{}{}",
        hold.map(|h| format!(" (hold: {h})")).unwrap_or_default(),
        error.map(|e| format!(" ({e})")).unwrap_or_default(),
        within
            .map(|w| format!(" within {} of {since}", humantime::format_duration(w)))
            .unwrap_or_default()
    );
    let from = match (api, after) {
        // A name alone measures from its request.
        (Some(a), Anchor::Start) => Some(a.at_ms),
        (_, a) => anchor_at(
            j,
            device.or(api.map(|a| a.device.as_str())).unwrap_or_default(),
            None,
            a,
        ),
    };
    let id = match api {
        Some(a) => a.id.clone(),
        None => from.and_then(|from| {
            j.received
                .get(device.unwrap_or_default())?
                .iter()
                .find(|c| c.op == name && c.at_ms >= from && j.commands.contains_key(&c.id))
                .map(|c| c.id.clone())
        }),
    };
    let Some(view) = id.as_ref().and_then(|id| j.commands.get(id)) else {
        let detail = match (api, &id) {
            (Some(_), None) => "the API did not take it (see the bench's notes)".to_owned(),
            (None, _) => format!("the node was never handed a `{name}` from the gateway"),
            (Some(_), Some(id)) => format!("the API does not know `{id}`"),
        };
        return outcome(what, line, false, detail);
    };
    let said = view["status"].as_str().unwrap_or_default();
    let said_error = view["error"].as_str();
    let said_hold = view["args"]["hold"].as_bool();
    let right =
        said == status && error.is_none_or(|e| said_error == Some(e)) && hold.is_none_or(|h| said_hold == Some(h));
    let verdict = if right {
        Ok(())
    } else {
        Err(format!(
            "the API says {said}{}{}",
            said_error.map(|e| format!(" ({e})")).unwrap_or_default(),
            said_hold.map(|h| format!(", hold: {h}")).unwrap_or_default()
        ))
    };
    match within {
        None => {
            let passed = verdict.is_ok();
            outcome(what, line, passed, verdict.err().unwrap_or_default())
        }
        Some(w) => timed(what, line, w, from, |_| {
            let settled = view["settled_at"].as_i64()?;
            Some((rel(j, settled), verdict))
        }),
    }
}

fn timed(
    what: String,
    line: usize,
    within: Duration,
    from: Option<u64>,
    find: impl FnOnce(u64) -> Option<(u64, Result<(), String>)>,
) -> Outcome {
    let Some(from) = from else {
        return Outcome {
            what,
            line,
            passed: false,
            measured: None,
            limit: Some(within),
            detail: "what it measures from never happened".into(),
        };
    };
    match find(from) {
        None => Outcome {
            what,
            line,
            passed: false,
            measured: None,
            limit: Some(within),
            detail: "never happened".into(),
        },
        Some((at, ok)) => {
            let took = Duration::from_millis(at.saturating_sub(from));
            let in_time = ms(took) <= ms(within);
            let detail = match (&ok, in_time) {
                (Err(e), _) => e.clone(),
                (Ok(()), false) => format!("took {}", humantime::format_duration(took)),
                (Ok(()), true) => String::new(),
            };
            Outcome {
                what,
                line,
                passed: ok.is_ok() && in_time,
                measured: Some(took),
                limit: Some(within),
                detail,
            }
        }
    }
}
