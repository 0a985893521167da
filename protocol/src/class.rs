//! The device classes and message kinds that appear as topic segments.

use crate::names::wire_names;

wire_names! {
    /// The kind of facility a node watches. It is a topic segment, so the gateway
    /// knows which rules and register map apply before it reads a payload.
    pub enum DeviceClass ("device class") {
        /// An elevator (电梯), watched per car.
        Elevator = 0 => "elevator",
        /// A fire pump room (消防泵房): pumps, pressure, tank, power.
        Firepump = 1 => "firepump",
        /// An e-bike charging bay (电动自行车充电棚) of 8–12 ports.
        Charger = 2 => "charger",
    }
}

wire_names! {
    /// What a message on a topic is: the last topic segment.
    pub enum Kind ("message kind") {
        /// A node's first message after (re)connecting.
        Birth = 0 => "birth",
        /// A node's last will, published by the broker when the node is lost.
        Death = 1 => "death",
        /// Telemetry samples.
        Data = 2 => "data",
        /// A fault or state change detected on the node.
        Event = 3 => "event",
        /// A command from the gateway to a node.
        Cmd = 4 => "cmd",
        /// A node's answer to a command.
        Ack = 5 => "ack",
    }
}

impl Kind {
    /// Whether this kind flows from the gateway to the node (only `cmd`).
    ///
    /// The gateway subscribes to the node-to-gateway kinds and publishes this one.
    #[must_use]
    pub const fn is_downlink(self) -> bool {
        matches!(self, Kind::Cmd)
    }

    /// The MQTT QoS the contract asks for: 1 for everything but `data`, which
    /// may go at QoS 0 on a link where a lost sample is cheaper than a retry.
    #[must_use]
    pub const fn min_qos(self) -> u8 {
        match self {
            Kind::Data => 0,
            _ => 1,
        }
    }
}
