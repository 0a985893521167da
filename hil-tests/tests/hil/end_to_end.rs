//! The lab's proof without a single real elevator: a simulated car drives
//! the real firmware, whose own payloads travel over a real MQTT broker into
//! the real gateway, all on one virtual clock. A passenger trapped between
//! floors becomes a `trapped` alert and a work order dispatched to the
//! contractor with its 30-minute arrive deadline; three virtual minutes
//! without a response send it on to the backup.

use std::time::Duration;

use firmware::elevator::ElevatorConfig as NodeElevatorConfig;
use firmware::hal::Millis;
use gateway::app::run::Running;
use gateway::app::shared::Options;
use gateway::clock::ManualClock;
use protocol::{DeviceClass, Format};
use sim::physics::elevator::{Door, ElevatorConfig, ElevatorFault, ElevatorSim};
use sim::rig;
use sim::uplink::Uplink;

/// 2026-12-01T08:00:00+08:00, the bench's epoch.
const T0: i64 = 1_796_083_200_000;

fn ingested(gw: &Running) -> u64 {
    hil_tests::bench::ingested(gw, &["birth", "data", "event", "ack", "death"])
}

/// The bench: the rig, its link, the gateway, one clock.
struct Bench {
    rig: rig::ElevatorRig,
    link: Uplink,
    gw: Running,
    clock: ManualClock,
    since_tick: u64,
}

impl Bench {
    /// Runs `ms` of virtual time in 100 ms steps: the rig, then what the node
    /// published reaches the gateway before its clock moves on; the gateway
    /// ticks every virtual second.
    async fn run(&mut self, ms: u64) {
        for _ in 0..ms / 100 {
            self.rig.advance(100);
            self.clock.set(T0 + i64::try_from(self.rig.now()).unwrap());
            let now = self.rig.now();
            let n = self.link.pump(&mut self.rig.node, now).unwrap();
            if n > 0 {
                let want = self.link.stats.published;
                for _ in 0..500 {
                    if ingested(&self.gw) >= want {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                assert!(ingested(&self.gw) >= want, "the gateway never got the node's payloads");
            }
            self.since_tick += 100;
            if self.since_tick >= 1000 || n > 0 {
                self.since_tick = 0;
                self.gw.tick().await.unwrap();
                self.gw.sync().await.unwrap();
            }
            let now = Millis(self.rig.now());
            self.link.commands(&mut self.rig.node, now);
        }
    }
}

async fn http_json(port: u16, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_becomes_a_dispatched_order_within_its_sla() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let text = format!(
        "[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"\n\
         [[contacts]]\nid = \"acme\"\nmqtt = true\n[[contacts]]\nid = \"city\"\nmqtt = true\n\
         [[dispatch.assign]]\nsite = \"lakeside\"\nclass = \"elevator\"\ncontractor = \"acme\"\nbackup = \"city\"\n",
        dir.path().display()
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("bench.toml"), &text).unwrap();
    let clock = ManualClock::new(T0);
    let options = Options {
        clock: std::sync::Arc::new(clock.clone()),
        ticker: false,
    };
    let gw = gateway::app::run::start(cfg, "t".into(), options).await.unwrap();
    testkit::wait_port(mqtt);

    let mut bench_rig = rig::elevator(
        ElevatorSim::new(ElevatorConfig::default(), 7),
        NodeElevatorConfig::default(),
        Format::Json,
    );
    bench_rig.node.set_wall_clock(Millis(0), T0);
    // The gateway subscribes once it has connected to its own broker: the
    // node's birth may precede it, so connect until the gateway has the node.
    let mut link = None;
    for _ in 0..100 {
        let l = Uplink::connect(
            "127.0.0.1",
            mqtt,
            ("lakeside", DeviceClass::Elevator, "EL-3"),
            &mut bench_rig.node,
            Millis(0),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        gw.sync().await.unwrap();
        if ingested(&gw) > 0 {
            link = Some(l);
            break;
        }
    }
    let mut b = Bench {
        rig: bench_rig,
        link: link.expect("the gateway never saw the node's birth"),
        gw,
        clock,
        since_tick: 0,
    };

    // Two people board at floor 1 for floor 8; the car sticks on the way.
    b.rig.plant.sim.call(1);
    while b.rig.plant.sim.state().door != Door::Open {
        b.run(100).await;
    }
    b.rig.plant.sim.board(2);
    b.rig.plant.sim.call(8);
    while !b.rig.plant.sim.state().moving {
        b.run(100).await;
    }
    b.run(4_000).await;
    b.rig.plant.sim.inject(ElevatorFault::StuckBetweenFloors);
    while b.rig.plant.sim.state().moving {
        b.run(100).await;
    }
    let stopped = b.rig.now();
    let mut fired = None;
    while b.rig.now() - stopped <= 60_000 {
        b.run(1_000).await;
        let a = http_json(http, "/api/v1/alerts?code=trapped&state=firing").await;
        if a["alerts"].as_array().is_some_and(|l| !l.is_empty()) {
            fired = Some(b.rig.now() - stopped);
            break;
        }
    }
    let took = fired.expect("no trapped alert within a minute");
    assert!(took <= 25_000, "trapped after {took} ms");
    let orders = http_json(http, "/api/v1/work-orders?status=open").await;
    let o = orders["work_orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == "trapped")
        .cloned()
        .expect("an order for the trapped passenger");
    assert_eq!(o["contractor"], "acme");
    let created = o["created_at"].as_i64().unwrap();
    assert_eq!(o["deadlines"]["arrive"].as_i64(), Some(created + 30 * 60_000));
    assert!(o["evidence"]["series"].as_array().is_some_and(|s| !s.is_empty()), "{o}");
    // Nobody responds for three virtual minutes: the backup has it.
    b.run(181_000).await;
    let orders = http_json(http, "/api/v1/work-orders").await;
    let trapped = orders["work_orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == "trapped")
        .unwrap();
    assert_eq!(trapped["contractor"], "city", "{trapped}");
    assert_eq!(trapped["escalations"][0]["missed"], "respond");
    b.gw.stop().await.unwrap();
}
