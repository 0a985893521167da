//! `gateway-demo`: the gateway on its embedded defaults with a simulated
//! compound around it, so a newcomer sees alerts, work orders and
//! supervision records within a minute, without a single real device.
//!
//! The compound ("demo-garden") is built from the HIL simulation (`sim`):
//! three lifts in residential traffic, a fire pump room and two e-bike
//! charging bays, each a physics model driving our **real firmware** node
//! through simulated peripherals, each reporting over MQTT to the embedded
//! broker exactly as a board would. Faults happen now and then (the first
//! after 15 s: smoke in a bay, which the node cuts at once and the gateway
//! dispatches at once), each cleared after a while, as a technician would.
//! The charging bays and the fire pump are provisioned, their nodes given
//! their command keys, so the console (or `curl`) can command them: a port
//! cut off from the engineer's device page is carried out by the real
//! firmware and acknowledged (docs/integrations.md).
//!
//! A crate of its own, so the production `gateway` binary links neither the
//! simulation nor the firmware.
//!
//! ```text
//! sim devices ──MQTT──▶ embedded broker ──▶ gateway ──▶ console :8080
//!   (physics → firmware)                       └─▶ orders to demo contractors (MQTT)
//! ```

use std::time::Duration;

use anyhow::Context as _;
use sim::device::{Action, DeviceSpec, SimDevice};
use sim::uplink::Uplink;

use gateway::app::config::Config;

/// The demo compound's site id.
pub const SITE: &str = "demo-garden";

/// When faults happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// The first (smoke in a bay, dispatched at once), after this long.
    pub first: Duration,
    /// Then one about this often (uniformly from half to one and a half).
    pub every: Duration,
}

/// One step of the compound's simulation, in wall time.
const STEP: Duration = Duration::from_millis(100);

/// The demo's contacts, assignments and tokens on top of `base` (the
/// embedded defaults with the command line's overrides).
///
/// # Errors
/// If the configuration does not validate (a bug: it is built here).
pub fn config(base: &Config, contractor_token: &str, auditor_token: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"[mqtt]
listen = "{mqtt}"
[http]
listen = "{http}"
[[http.tokens]]
name = "demo contractor (lifts)"
token = "{contractor_token}"
role = "contractor"
contractor = "demo-lifts"
[[http.tokens]]
name = "demo auditor (bureau)"
token = "{auditor_token}"
role = "auditor"
[storage]
data_dir = "{data}"
[[contacts]]
id = "demo-lifts"
name = "示范电梯维保"
mqtt = true
[[contacts]]
id = "demo-fire"
name = "示范消防维保"
mqtt = true
[[contacts]]
id = "demo-bays"
name = "示范充电桩运维"
mqtt = true
[[contacts]]
id = "demo-manager"
name = "物业值班"
mqtt = true
[[alerting.buildings]]
site = "{SITE}"
building = "1号楼"
devices = ["B1-EL-1", "B1-EL-2", "BAY-1"]
[[alerting.buildings]]
site = "{SITE}"
building = "2号楼"
devices = ["B2-EL-1", "BAY-2", "FP-1"]
[[dispatch.assign]]
site = "{SITE}"
class = "elevator"
contractor = "demo-lifts"
backup = "demo-fire"
manager = "demo-manager"
[[dispatch.assign]]
site = "{SITE}"
class = "firepump"
contractor = "demo-fire"
manager = "demo-manager"
[[dispatch.assign]]
site = "{SITE}"
class = "charger"
contractor = "demo-bays"
manager = "demo-manager"
"#,
        mqtt = base.mqtt.listen,
        http = base.http.listen,
        data = base.storage.data_dir.display().to_string().replace('\\', "\\\\"),
    );
    let mut config = Config::parse(std::path::Path::new("(demo)"), &text)
        .map_err(|e| anyhow::anyhow!("the demo's configuration: {e}"))?;
    // The platforms upstream (`--upstream FILE`): the demo's lift alarms and
    // their orders' steps go to them as a real compound's would.
    config.upstream = base.upstream.clone();
    Ok(config)
}

/// The devices the demo provisions so they can be commanded: the bays
/// (cut a port off) and the pump (its self-test).
pub const COMMANDED: &[(&str, &str)] = &[("BAY-1", "charger"), ("BAY-2", "charger"), ("FP-1", "firepump")];

/// The command keys (hex) of [`COMMANDED`], by device: read from the store
/// when a previous run provisioned them, provisioned now otherwise (before
/// the gateway starts, as `gateway devices add` does).
///
/// # Errors
/// The store's, or provisioning's.
pub fn command_keys(data_dir: &std::path::Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut keys = std::collections::BTreeMap::new();
    {
        let store = gateway::store::Store::open(data_dir)?;
        for (device, _) in COMMANDED {
            let live = gateway::store::credentials::get(store.conn(), SITE, device)
                .map_err(|e| anyhow::anyhow!("reading {device}'s credential: {e}"))?
                .filter(|c| c.revoked.is_none());
            if let Some(c) = live {
                keys.insert(
                    (*device).to_owned(),
                    c.cmd_key.iter().fold(String::with_capacity(64), |mut hex, b| {
                        use std::fmt::Write as _;
                        let _ = write!(hex, "{b:02x}");
                        hex
                    }),
                );
            }
        }
    }
    for (device, class) in COMMANDED {
        if keys.contains_key(*device) {
            continue;
        }
        let new = gateway::ops::provisioning::NewDevice {
            site: SITE.into(),
            class: (*class).into(),
            device: (*device).into(),
            certificate_sha256: None,
            rotate: true,
        };
        let answer = gateway::app::cli::add_device_offline(data_dir, new)
            .map_err(|e| anyhow::anyhow!("provisioning {device}: {e}"))?;
        let key = answer["cmd_key"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("provisioning {device}: no cmd_key"))?;
        keys.insert((*device).to_owned(), key.to_owned());
    }
    Ok(keys)
}

/// The compound: (spec, charging ports to plug at the start).
fn compound() -> Vec<(DeviceSpec, &'static [u8])> {
    let lift = |id: &str, seed: u64| DeviceSpec {
        traffic: true,
        seed,
        floors: 18,
        ..DeviceSpec::new(SITE, id, protocol::DeviceClass::Elevator)
    };
    let bay = |id: &str, ports: u8, seed: u64| DeviceSpec {
        ports,
        seed,
        ..DeviceSpec::new(SITE, id, protocol::DeviceClass::Charger)
    };
    vec![
        (lift("B1-EL-1", 11), &[]),
        (lift("B1-EL-2", 12), &[]),
        (lift("B2-EL-1", 13), &[]),
        (DeviceSpec::new(SITE, "FP-1", protocol::DeviceClass::Firepump), &[]),
        (bay("BAY-1", 8, 21), &[1, 2, 3, 5]),
        (bay("BAY-2", 4, 22), &[1, 4]),
    ]
}

/// A fault that happens now and then: on which class, which fault (and
/// port), for how long.
struct Mishap {
    class: protocol::DeviceClass,
    fault: &'static str,
    port: Option<u8>,
    lasts: Duration,
}

const fn mishap(class: protocol::DeviceClass, fault: &'static str, port: Option<u8>, secs: u64) -> Mishap {
    Mishap {
        class,
        fault,
        port,
        lasts: Duration::from_secs(secs),
    }
}

/// What goes wrong in the demo, the first entry first.
const MISHAPS: &[Mishap] = {
    use protocol::DeviceClass::{Charger, Elevator, Firepump};
    &[
        mishap(Charger, "smoke", None, 20),
        mishap(Elevator, "stuck_between_floors", None, 120),
        mishap(Firepump, "not_in_auto", None, 150),
        mishap(Elevator, "alarm_pressed", None, 5),
        mishap(Charger, "over_current", Some(2), 40),
        mishap(Elevator, "power_cut", None, 45),
        mishap(Firepump, "main_power_fault", None, 60),
        mishap(Elevator, "ebike_boarding", None, 30),
        mishap(Charger, "leakage", None, 15),
        mishap(Elevator, "door_wont_close", None, 90),
        mishap(Firepump, "pump_fault", None, 60),
        mishap(Elevator, "overspeed", None, 20),
    ]
};

/// A device of the compound and its link.
struct Member {
    dev: SimDevice,
    link: Uplink,
}

/// Runs the compound against the broker at `mqtt` until `stop` is set:
/// every 100 ms each device steps and sends what its node queued; a fault
/// now and then (`None`: never).
///
/// # Errors
/// If a device cannot reach the broker.
pub async fn compound_task(
    mqtt: std::net::SocketAddr,
    faults: Option<Faults>,
    seed: u64,
    keys: std::collections::BTreeMap<String, String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let host = mqtt.ip().to_string();
    let epoch = gateway::app::run::now_ms();
    let mut members = Vec::new();
    for (mut spec, plugs) in compound() {
        // The key the gateway signs this node's commands with.
        spec.cmd_key = keys.get(&spec.id).cloned();
        let mut dev = SimDevice::new(spec, epoch);
        for &port in plugs {
            let _ = dev.act(&Action::Plug {
                port,
                soc: Some(0.3),
                capacity_wh: None,
            });
        }
        let (site, class, id) = (dev.spec.site.clone(), dev.spec.class, dev.spec.id.clone());
        let link = Uplink::connect(
            &host,
            mqtt.port(),
            (&site, class, &id),
            dev.node(),
            firmware::hal::Millis(0),
        )
        .await
        .with_context(|| format!("{id}: connecting to the embedded broker at {mqtt}"))?;
        members.push(Member { dev, link });
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut every = tokio::time::interval(STEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let mut next_fault = faults.map(|f| started + f.first);
    let mut next_mishap = 0usize;
    let mut clears: Vec<(tokio::time::Instant, usize, Action)> = Vec::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let now = tokio::time::Instant::now();
        for m in &mut members {
            m.dev.advance(u64::try_from(STEP.as_millis()).unwrap_or(100));
            let t = m.dev.now();
            if let Err(e) = m.link.pump(m.dev.node(), t) {
                tracing::warn!(device = %m.dev.spec.id, error = %e, "demo: a node could not publish");
            }
            m.link.commands(m.dev.node(), firmware::hal::Millis(t));
        }
        if let (Some(due), Some(Faults { every: avg, .. })) = (next_fault, faults)
            && now >= due
        {
            let mishap = &MISHAPS[next_mishap % MISHAPS.len()];
            next_mishap += 1;
            if let Some((i, clear)) = befall(&mut members, mishap, &mut rng) {
                clears.push((now + mishap.lasts, i, clear));
            }
            // Uniform in [avg / 2, 3 avg / 2].
            let jitter = avg.mul_f64(0.5 + rng.f64());
            next_fault = Some(now + jitter);
        }
        let (due, later): (Vec<_>, Vec<_>) = clears.drain(..).partition(|(at, _, _)| *at <= now);
        clears = later;
        for (_, i, clear) in due {
            let m = &mut members[i];
            let _ = m.dev.act(&clear);
            if m.dev.spec.class == protocol::DeviceClass::Charger {
                // The technician resets the bay's cut-offs once the cause is gone.
                m.dev.reset_cutoffs();
            }
            tracing::info!(device = %m.dev.spec.id, "demo: fault cleared");
        }
    }
}

/// Injects `mishap` on a device of its class (chosen at random); returns the
/// device and the action that clears it.
fn befall(members: &mut [Member], mishap: &Mishap, rng: &mut fastrand::Rng) -> Option<(usize, Action)> {
    let candidates: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].dev.spec.class == mishap.class)
        .collect();
    let &i = candidates.get(rng.usize(..candidates.len().max(1)))?;
    let m = &mut members[i];
    let inject = Action::Inject {
        fault: mishap.fault.into(),
        port: mishap.port,
        ma: None,
    };
    match m.dev.act(&inject) {
        Ok(()) => {
            tracing::info!(device = %m.dev.spec.id, fault = mishap.fault, lasts = ?mishap.lasts, "demo: fault injected");
            Some((
                i,
                Action::Clear {
                    fault: mishap.fault.into(),
                    port: mishap.port,
                },
            ))
        }
        Err(e) => {
            tracing::warn!(device = %m.dev.spec.id, error = %e, "demo: could not inject");
            None
        }
    }
}

/// The demo: the gateway on `base` (embedded broker, store, HTTP)
/// with the demo's contacts and tokens, and the simulated compound around
/// it, until `shutdown`. Prints the console's address and the tokens.
///
/// # Errors
/// Start-up failures, as `gateway run`; a simulated device that cannot
/// reach the embedded broker.
pub async fn run(
    base: &Config,
    admin_token: String,
    faults: Option<Faults>,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let contractor = gateway::app::run::random_token()?;
    let auditor = gateway::app::run::random_token()?;
    let config = config(base, &contractor, &auditor)?;
    let keys = command_keys(&config.storage.data_dir)?;
    let (mqtt, http) = (config.mqtt.listen, config.http.listen);
    let gw = gateway::app::run::start(config, admin_token.clone(), gateway::app::shared::Options::default()).await?;
    if !gw.subscribed(Duration::from_secs(10)).await {
        tracing::warn!("the gateway has not subscribed at its broker yet: early births may be lost");
    }
    let console = format!("http://{http}/");
    println!();
    println!("  gateway-demo: a simulated compound ({SITE}) through the real firmware");
    println!("  console      {console}   (signed in as admin: {console}#token={admin_token})");
    println!("  admin token  {admin_token}");
    println!("  contractor   {contractor}   (demo-lifts: its own work orders only)");
    println!("  auditor      {auditor}   (the bureau: records, reports)");
    println!(
        "  MQTT broker  {mqtt}   (mosquitto_sub -h {} -p {} -t 'fm/v1/#' -v)",
        mqtt.ip(),
        mqtt.port()
    );
    for p in &base.upstream.elevator_platform {
        println!("  upstream     {} ({}): elevator alarms and disposals", p.url, p.name);
    }
    println!(
        "  command      curl -X POST -H 'Authorization: Bearer {admin_token}' {console}api/v1/devices/{SITE}/BAY-2/commands -d '{{\"op\":\"cut_off\",\"args\":{{\"port\":1}}}}'"
    );
    println!("               (or 切断端口 · Cut off port on a bay's page in the console)");
    match faults {
        Some(f) => println!(
            "  faults       the first in {}, then about every {}",
            humantime::format_duration(f.first),
            humantime::format_duration(f.every)
        ),
        None => println!("  faults       none (--no-faults)"),
    }
    println!();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut compound = tokio::spawn(compound_task(mqtt, faults, seed, keys, stop_rx));
    let ended = tokio::select! {
        () = shutdown => None,
        r = &mut compound => Some(r),
    };
    let _ = stop_tx.send(true);
    let sim_result = match ended {
        Some(r) => r,
        None => compound.await,
    };
    gw.stop().await?;
    sim_result.map_err(|e| anyhow::anyhow!("the simulated compound failed: {e}"))?
}
