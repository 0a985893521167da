//! The MQTT channel: the JSON message published on the gateway's own broker
//! connection, for consoles and apps that already subscribe there.

use std::time::Duration;

use rumqttc::{AsyncClient, QoS};

use crate::{Channel, Contact, Message, SendError, SendFuture};

/// How long a publish may wait for room in the client's request queue by
/// default. The queue drains only while the gateway polls the event loop; a
/// stalled loop must fail the attempt (retryable) rather than hold a
/// concurrency permit forever.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes the JSON message with QoS 1, not retained, to
/// `{prefix}/{contact id}/{kind}` (the gateway uses prefix `fm/v1/dispatch`,
/// five levels in all, which the ingest filter `fm/v1/+/+/+/+` deliberately
/// does not match, so the gateway never ingests its own notifications).
///
/// Not retained: a retained notification would be replayed to every new
/// subscriber as if it had just happened. QoS 1 with the broker's persistent
/// sessions lets a subscriber that was briefly away still get it.
///
/// "Delivered" means handed to the `AsyncClient` queue: the broker's PUBACK
/// is seen by the event loop the gateway owns, and rumqttc resends unacked
/// QoS 1 publishes itself after a reconnect. A queue error (the event loop is
/// gone, or no room within the queue timeout) is retryable.
#[derive(Clone, Debug)]
pub struct Mqtt {
    client: AsyncClient,
    prefix: String,
    queue_timeout: Duration,
}

impl Mqtt {
    /// A channel publishing through `client` (whose event loop the caller
    /// polls) under `prefix` (no trailing `/`).
    pub fn new(client: AsyncClient, prefix: String) -> Mqtt {
        let mut prefix = prefix;
        while prefix.ends_with('/') {
            prefix.pop();
        }
        Mqtt {
            client,
            prefix,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }

    /// Changes how long one publish may wait for room in the client's request
    /// queue (default 10 s) before the attempt fails as retryable.
    #[must_use]
    pub fn with_queue_timeout(mut self, timeout: Duration) -> Mqtt {
        self.queue_timeout = timeout;
        self
    }

    /// The topic a message for `to` goes to, or why it cannot have one: a
    /// contact id or kind containing `/`, `+`, `#` or nothing would publish
    /// somewhere subscribers do not look (or be refused), and no retry
    /// changes that.
    fn topic(&self, to: &Contact, msg: &Message) -> Result<String, SendError> {
        for (what, level) in [("contact id", to.id.as_str()), ("kind", msg.kind.as_str())] {
            if level.is_empty() || level.contains(['/', '+', '#', '\0']) {
                return Err(SendError::permanent(format!(
                    "{what} {level:?} cannot be an MQTT topic level"
                )));
            }
        }
        if self.prefix.is_empty() || self.prefix.contains(['+', '#', '\0']) {
            return Err(SendError::permanent(format!(
                "invalid MQTT topic prefix {:?}",
                self.prefix
            )));
        }
        Ok(format!("{}/{}/{}", self.prefix, to.id, msg.kind))
    }

    async fn publish(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        let topic = self.topic(to, msg)?;
        let payload =
            serde_json::to_vec(msg).map_err(|e| SendError::permanent(format!("encoding the message: {e}")))?;
        match tokio::time::timeout(
            self.queue_timeout,
            self.client.publish(topic, QoS::AtLeastOnce, false, payload),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::retryable(format!("MQTT client: {e}"))),
            Err(_) => Err(SendError::retryable(format!(
                "MQTT client queue stayed full for {:?} (event loop not polled?)",
                self.queue_timeout
            ))),
        }
    }
}

impl Channel for Mqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.mqtt
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.publish(to, msg))
    }
}
