//! Sparkplug B topics: `spBv1.0/{group}/{type}/{edge}[/{device}]` and the
//! host's `spBv1.0/STATE/{host_id}`.

use std::fmt;

/// The namespace of Sparkplug B, the first level of every topic.
pub const NAMESPACE: &str = "spBv1.0";

/// The message types of the topic's third level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// An edge node's birth: its metrics with their aliases, and `bdSeq`.
    NBirth,
    /// An edge node's death (its MQTT will), with the `bdSeq` of its birth.
    NDeath,
    /// A device's birth, published by its edge node.
    DBirth,
    /// A device's death, published by its edge node.
    DDeath,
    /// An edge node's own data.
    NData,
    /// A device's data.
    DData,
    /// A command to an edge node (the host's rebirth request).
    NCmd,
    /// A command to a device.
    DCmd,
}

impl MessageType {
    /// The type as it is written in a topic.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::NData => "NDATA",
            MessageType::DData => "DDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DCmd => "DCMD",
        }
    }

    /// The type of a topic level.
    #[must_use]
    pub fn parse(s: &str) -> Option<MessageType> {
        Some(match s {
            "NBIRTH" => MessageType::NBirth,
            "NDEATH" => MessageType::NDeath,
            "DBIRTH" => MessageType::DBirth,
            "DDEATH" => MessageType::DDeath,
            "NDATA" => MessageType::NData,
            "DDATA" => MessageType::DData,
            "NCMD" => MessageType::NCmd,
            "DCMD" => MessageType::DCmd,
            _ => return None,
        })
    }

    /// Whether the topic names a device (`D...`) after the edge node.
    #[must_use]
    pub fn is_device(self) -> bool {
        matches!(
            self,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Sparkplug B topic of an edge node or one of its devices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The group id.
    pub group: String,
    /// The message type.
    pub kind: MessageType,
    /// The edge node id.
    pub edge: String,
    /// The device id, for the device types.
    pub device: Option<String>,
}

/// A topic that is not a Sparkplug B edge-node topic, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not under `spBv1.0/`.
    #[error("not a Sparkplug B topic (it must begin with `spBv1.0/`)")]
    Namespace,
    /// The host's `spBv1.0/STATE/...`, not an edge node's.
    #[error("a host application's STATE topic")]
    State,
    /// The third level is not a message type.
    #[error("unknown Sparkplug message type `{0}`")]
    Type(String),
    /// Too few or too many levels for the type, or an empty one.
    #[error("a {0} topic is spBv1.0/{{group}}/{0}/{{edge}}{1}")]
    Levels(MessageType, &'static str),
}

impl Topic {
    /// Parses an edge node's or a device's topic.
    ///
    /// # Errors
    /// [`TopicError`] for anything else (STATE included).
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let mut levels = topic.split('/');
        if levels.next() != Some(NAMESPACE) {
            return Err(TopicError::Namespace);
        }
        let rest: Vec<&str> = levels.collect();
        if rest.first() == Some(&"STATE") {
            return Err(TopicError::State);
        }
        let kind_text = rest.get(1).copied().unwrap_or_default();
        let kind = MessageType::parse(kind_text).ok_or_else(|| TopicError::Type(kind_text.to_owned()))?;
        let shape = if kind.is_device() { "/{device}" } else { "" };
        let ok = |s: &&str| !s.is_empty();
        match (kind.is_device(), rest.as_slice()) {
            (false, [group, _, edge]) if ok(group) && ok(edge) => Ok(Topic {
                group: (*group).to_owned(),
                kind,
                edge: (*edge).to_owned(),
                device: None,
            }),
            (true, [group, _, edge, device]) if ok(group) && ok(edge) && ok(device) => Ok(Topic {
                group: (*group).to_owned(),
                kind,
                edge: (*edge).to_owned(),
                device: Some((*device).to_owned()),
            }),
            _ => Err(TopicError::Levels(kind, shape)),
        }
    }

    /// The topic's text.
    #[must_use]
    pub fn to_topic(&self) -> String {
        match &self.device {
            Some(d) => format!("{NAMESPACE}/{}/{}/{}/{d}", self.group, self.kind, self.edge),
            None => format!("{NAMESPACE}/{}/{}/{}", self.group, self.kind, self.edge),
        }
    }

    /// The NCMD topic of an edge node (where a rebirth is asked for).
    #[must_use]
    pub fn ncmd(group: &str, edge: &str) -> String {
        format!("{NAMESPACE}/{group}/NCMD/{edge}")
    }
}

/// The topic of a host application's STATE (Sparkplug 3.0).
#[must_use]
pub fn state_topic(host_id: &str) -> String {
    format!("{NAMESPACE}/STATE/{host_id}")
}

/// The filters a host subscribes to for everything edge nodes send (not
/// the commands, not STATE): one per message type and shape.
#[must_use]
pub fn host_filters() -> [String; 6] {
    [
        format!("{NAMESPACE}/+/NBIRTH/+"),
        format!("{NAMESPACE}/+/NDEATH/+"),
        format!("{NAMESPACE}/+/NDATA/+"),
        format!("{NAMESPACE}/+/DBIRTH/+/+"),
        format!("{NAMESPACE}/+/DDEATH/+/+"),
        format!("{NAMESPACE}/+/DDATA/+/+"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_device_topics_parse_and_print_back() {
        for t in [
            "spBv1.0/lakeside/NBIRTH/pumproom",
            "spBv1.0/lakeside/NDEATH/pumproom",
            "spBv1.0/lakeside/NDATA/pumproom",
            "spBv1.0/lakeside/DBIRTH/pumproom/pump-1",
            "spBv1.0/lakeside/DDATA/pumproom/pump-1",
            "spBv1.0/lakeside/DDEATH/pumproom/pump-1",
            "spBv1.0/lakeside/NCMD/pumproom",
            "spBv1.0/lakeside/DCMD/pumproom/pump-1",
        ] {
            let parsed = Topic::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(parsed.to_topic(), t);
        }
        let d = Topic::parse("spBv1.0/g/DDATA/e/d").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (d.group.as_str(), d.kind, d.edge.as_str()),
            ("g", MessageType::DData, "e")
        );
        assert_eq!(d.device.as_deref(), Some("d"));
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        assert_eq!(Topic::parse("fm/v1/a/b/c/data"), Err(TopicError::Namespace));
        assert_eq!(Topic::parse("spBv1.0/STATE/host"), Err(TopicError::State));
        assert_eq!(Topic::parse("spBv1.0/g/NFOO/e"), Err(TopicError::Type("NFOO".into())));
        assert!(matches!(
            Topic::parse("spBv1.0/g/NDATA/e/d"),
            Err(TopicError::Levels(MessageType::NData, _))
        ));
        assert!(matches!(
            Topic::parse("spBv1.0/g/DDATA/e"),
            Err(TopicError::Levels(MessageType::DData, _))
        ));
        assert!(Topic::parse("spBv1.0//NDATA/e").is_err());
        assert!(Topic::parse("spBv1.0/g/DDATA/e/").is_err());
    }

    #[test]
    fn the_host_topics() {
        assert_eq!(state_topic("fm-gateway"), "spBv1.0/STATE/fm-gateway");
        assert_eq!(Topic::ncmd("g", "e"), "spBv1.0/g/NCMD/e");
        assert!(host_filters().iter().all(|f| f.starts_with("spBv1.0/+/")));
    }
}
