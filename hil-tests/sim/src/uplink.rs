//! A simulated node's MQTT link: a real MQTT client to a real broker (the
//! gateway's embedded one, or Mosquitto), carrying exactly what the firmware
//! node queues — its birth on connect, its will, its data, events and acks,
//! on its own topics — and handing it the commands the gateway sends. The
//! node's payloads are the bytes the board would put on the wire.

use firmware::hal::Millis;
use firmware::node::{ClassLogic, Node};
use protocol::{DeviceClass, Kind};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// Why the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker refused or dropped the request.
    #[error("mqtt: {0}")]
    Client(#[from] rumqttc::ClientError),
    /// The node could not encode a payload.
    #[error("encode: {0:?}")]
    Encode(protocol::EncodeError),
}

/// One node's link.
pub struct Uplink {
    client: AsyncClient,
    base: String,
    commands: mpsc::UnboundedReceiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
    /// Payloads published so far.
    pub published: u64,
}

impl Uplink {
    /// Connects the node `site/class/device` to the broker at `host:port`,
    /// with its will, and publishes its birth.
    ///
    /// # Errors
    /// [`LinkError`].
    pub async fn connect<L: ClassLogic>(
        host: &str,
        port: u16,
        (site, class, device): (&str, DeviceClass, &str),
        node: &mut Node<L>,
        now: Millis,
    ) -> Result<Uplink, LinkError> {
        let base = format!("fm/v1/{site}/{}/{device}", class.as_str());
        let mut buf = [0u8; 2048];
        let will_len = node.will(&mut buf).map_err(LinkError::Encode)?;
        let mut opts = MqttOptions::new(format!("hil-{site}-{device}"), host, port);
        opts.set_last_will(LastWill::new(
            format!("{base}/death"),
            buf[..will_len].to_vec(),
            QoS::AtLeastOnce,
            false,
        ));
        opts.set_keep_alive(std::time::Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let (tx, commands) = mpsc::unbounded_channel();
        let cmd_topic = format!("{base}/cmd");
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                        if tx.send(p.payload.to_vec()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
        client.subscribe(format!("{base}/cmd"), QoS::AtLeastOnce).await?;
        let birth = node.on_connect(now, &mut buf).map_err(LinkError::Encode)?;
        client
            .publish(
                format!("{base}/birth"),
                QoS::AtLeastOnce,
                false,
                buf[..birth.len].to_vec(),
            )
            .await?;
        Ok(Uplink {
            client,
            base,
            commands,
            task,
            published: 1,
        })
    }

    /// Publishes everything the node has queued; returns how many.
    ///
    /// # Errors
    /// [`LinkError`]; what was not published stays in the node's outbox.
    pub async fn flush<L: ClassLogic>(&mut self, node: &mut Node<L>) -> Result<u64, LinkError> {
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while let Some(out) = node.next_payload(&mut buf) {
            let topic = format!("{}/{}", self.base, kind_name(out.kind));
            self.client
                .publish(topic, QoS::AtLeastOnce, false, buf[..out.len].to_vec())
                .await?;
            // Handed to the client's QoS 1 session, which retries until PUBACK.
            node.published();
            n += 1;
        }
        self.published += n;
        Ok(n)
    }

    /// Hands the node the commands that arrived.
    pub fn commands<L: ClassLogic>(&mut self, node: &mut Node<L>, now: Millis) -> usize {
        let mut n = 0;
        while let Ok(c) = self.commands.try_recv() {
            node.on_command(now, &c);
            n += 1;
        }
        n
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn kind_name(kind: Kind) -> &'static str {
    kind.as_str()
}
