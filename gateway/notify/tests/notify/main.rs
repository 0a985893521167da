//! Integration tests of the notification channels and the outbox against
//! real servers: an axum HTTP server for webhooks (and as a mock of the WeCom,
//! DingTalk and SMS gateway APIs), Mosquitto for MQTT and
//! aiosmtpd for e-mail, each on a free port of 127.0.0.1.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod china;
mod common;
mod email;
mod mqtt;
mod outbox;
mod webhook;
