//! The gateway crate's one integration-test binary.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod alerts;
mod api;
mod backup;
mod broker;
mod check;
mod commands;
mod config;
mod configuration;
mod delivery;
mod elevator_platform;
mod embedded_broker;
mod fire_centre;
mod fuzz_findings;
mod grafana;
mod http;
mod http_hardening;
mod identity;
mod influx;
mod ingest;
mod judgement;
mod logs;
mod migrations;
mod modbus;
mod modbus_clock;
mod notify_channels;
mod process;
mod prometheus_rules;
mod registry;
mod service;
mod sparkplug;
mod store;
mod tls;
mod virtual_time;
mod workorders;
