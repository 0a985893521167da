//! The words people read: every code, class, state, status, severity,
//! record kind, role and metric in Chinese with English beside it, as one
//! table (`GET /api/v1/labels`) the console and any other client render
//! from, so no screen keeps a copy that drifts from the gateway's codes.
//!
//! Event codes take their labels from `protocol` (the same words the node's
//! docs, notifications and work orders use); the rest are here. A test
//! checks every wire name of every enumeration has an entry, so a new code
//! or state cannot reach a screen as a bare identifier.

use std::sync::OnceLock;

use protocol::metric::{Metric, PortMetric};
use protocol::{DeviceClass, EventCode};
use serde_json::{Map, Value, json};

fn pair(zh: &str, en: &str) -> Value {
    json!({ "zh": zh, "en": en })
}

fn table(rows: &[(&str, &str, &str)]) -> Value {
    Value::Object(rows.iter().map(|(k, zh, en)| ((*k).to_owned(), pair(zh, en))).collect())
}

/// Device classes.
pub const CLASSES: &[(&str, &str, &str)] = &[
    ("elevator", "电梯", "Elevator"),
    ("firepump", "消防泵", "Fire pump"),
    ("charger", "充电桩", "Charging bay"),
    ("gateway", "网关", "Gateway"),
];

/// Alert states (`alerting::State`).
pub const ALERT_STATES: &[(&str, &str, &str)] = &[
    ("pending", "待确认", "Pending"),
    ("firing", "告警中", "Firing"),
    ("acknowledged", "已确认", "Acknowledged"),
    ("resolved", "已恢复", "Resolved"),
];

/// Alert changes on the event stream (`ops::alerts::change_name`).
pub const ALERT_CHANGES: &[(&str, &str, &str)] = &[
    ("pending", "待确认", "Pending"),
    ("fired", "触发", "Fired"),
    ("acknowledged", "已确认", "Acknowledged"),
    ("resolved", "恢复", "Resolved"),
    ("cancelled", "取消", "Cancelled"),
    ("updated", "更新", "Updated"),
];

/// Work-order statuses (`dispatch::Status`).
pub const ORDER_STATUSES: &[(&str, &str, &str)] = &[
    ("dispatched", "已派单", "Dispatched"),
    ("responded", "已接单", "Responded"),
    ("arrived", "已到场", "Arrived"),
    ("completed", "已完成", "Completed"),
    ("false_alarm", "误报", "False alarm"),
];

/// Work-order kinds (`dispatch::Kind`).
pub const ORDER_KINDS: &[(&str, &str, &str)] = &[
    ("corrective", "故障维修", "Corrective"),
    ("preventive", "定期维保", "Preventive"),
];

/// A contractor's steps, as the API's paths name them.
pub const STEPS: &[(&str, &str, &str)] = &[
    ("respond", "接单", "Respond"),
    ("arrive", "到场", "Arrive"),
    ("complete", "完成", "Complete"),
    ("false-alarm", "误报", "False alarm"),
];

/// Deadlines of an order (`dispatch::Deadline`).
pub const DEADLINES: &[(&str, &str, &str)] = &[
    ("respond", "响应时限", "Respond by"),
    ("arrive", "到场时限", "Arrive by"),
    ("complete", "完成时限", "Complete by"),
    ("bureau", "上报监管时限", "Bureau by"),
];

/// Severities (`protocol::Severity`).
pub const SEVERITIES: &[(&str, &str, &str)] = &[
    ("critical", "紧急", "Critical"),
    ("major", "重要", "Major"),
    ("minor", "一般", "Minor"),
    ("info", "提示", "Info"),
];

/// Device reachability (`registry::Status`).
pub const DEVICE_STATUS: &[(&str, &str, &str)] = &[
    ("online", "在线", "Online"),
    ("offline", "离线", "Offline"),
    ("stale", "无数据", "Silent"),
];

/// Token roles (`auth::Role`).
pub const ROLES: &[(&str, &str, &str)] = &[
    ("admin", "管理员", "Administrator"),
    ("engineer", "物业工程师", "Property engineer"),
    ("contractor", "维保单位", "Contractor"),
    ("auditor", "监管部门", "Auditor"),
];

/// Supervision record kinds (docs/records.md).
pub const RECORD_KINDS: &[(&str, &str, &str)] = &[
    ("config_initial", "初始配置", "Initial configuration"),
    ("config_changed", "配置变更", "Configuration changed"),
    ("alert_fired", "告警触发", "Alert fired"),
    ("alert_acknowledged", "告警确认", "Alert acknowledged"),
    ("alert_resolved", "告警恢复", "Alert resolved"),
    ("alert_updated", "告警更新", "Alert updated"),
    ("notification", "告警通知", "Notification"),
    ("work_order_dispatched", "派单", "Work order dispatched"),
    ("work_order_joined", "并入工单", "Joined a work order"),
    ("work_order_responded", "接单", "Work order responded"),
    ("work_order_arrived", "到场", "Arrived on site"),
    ("work_order_completed", "完成", "Work order completed"),
    ("work_order_false_alarm", "误报", "False alarm"),
    ("work_order_alert_resolved", "故障恢复", "Alert of the order resolved"),
    ("deadline_missed", "超时", "Deadline missed"),
    ("bureau_flagged", "上报监管", "Flagged to the bureau"),
    ("duty_missed", "维保逾期", "Duty missed"),
    ("duty_done", "维保完成", "Duty done"),
    ("self_test", "巡检", "Self-test"),
    ("maintenance_started", "维保开始", "Maintenance started"),
    ("maintenance_ended", "维保结束", "Maintenance ended"),
    ("notification_sent", "通知已送达", "Notification sent"),
    ("notification_dead_letter", "通知失败", "Notification failed"),
    ("upstream_delivered", "已报送上级平台", "Delivered upstream"),
    ("upstream_dead_letter", "上级平台报送失败", "Upstream delivery failed"),
    ("replayed_event", "补传事件", "Replayed event"),
    ("rejected_input", "拒收数据", "Rejected input"),
    ("device_provisioned", "设备开通", "Device provisioned"),
    ("device_rotated", "设备凭据轮换", "Device credentials rotated"),
    ("device_revoked", "设备注销", "Device revoked"),
    ("command_sent", "指令下发", "Command sent"),
    ("command_acked", "指令已执行", "Command carried out"),
    ("command_refused", "指令被拒", "Command refused"),
    ("command_expired", "指令超时", "Command expired"),
    ("command_late_ack", "指令迟到回执", "Late command ack"),
    ("thresholds_confirmed", "阈值已生效", "Thresholds confirmed"),
];

/// Commands to nodes (`protocol::Op`).
pub const COMMAND_OPS: &[(&str, &str, &str)] = &[
    ("cut_off", "切断端口", "Cut off port"),
    ("clear", "恢复端口", "Clear cut-off"),
    ("self_test", "巡检", "Self-test"),
    ("set_threshold", "设置阈值", "Set threshold"),
    ("hold_doors", "阻梯保持开门", "Hold doors open"),
];

/// Where a command stands (`ops::commands::Status`).
pub const COMMAND_STATUSES: &[(&str, &str, &str)] = &[
    ("sent", "已下发", "Sent"),
    ("acked", "已执行", "Carried out"),
    ("refused", "被拒绝", "Refused"),
    ("expired", "超时未回执", "Expired"),
];

/// Metrics: Chinese, English, and the unit shown beside a value.
const METRICS: &[(&str, &str, &str)] = &[
    ("running", "运行中", "Running"),
    ("direction", "运行方向", "Direction"),
    ("floor", "楼层", "Floor"),
    ("door_zone", "门区", "In door zone"),
    ("door_closed", "门已关", "Doors closed"),
    ("occupied", "有人", "Occupied"),
    ("service_mode", "服务模式", "Service mode"),
    ("speed_mps", "速度", "Speed"),
    ("rated_speed_mps", "额定速度", "Rated speed"),
    ("load_pct", "载重", "Load"),
    ("power_ok", "供电正常", "Power OK"),
    ("run_count", "运行次数", "Runs"),
    ("run_hours", "运行时间", "Run hours"),
    ("safety_circuit_ok", "安全回路正常", "Safety circuit OK"),
    ("alarm_button", "报警按钮", "Alarm button"),
    ("ebike_detected", "检测到电动车", "E-bike detected"),
    ("pump_running", "泵运行", "Pump running"),
    ("pump_fault", "泵故障", "Pump fault"),
    ("auto_mode", "自动状态", "Automatic mode"),
    ("start_signal", "启泵信号", "Start signal"),
    ("outlet_pressure_mpa", "出口压力", "Outlet pressure"),
    ("network_pressure_mpa", "管网压力", "Network pressure"),
    ("tank_level_m", "水箱水位", "Tank level"),
    ("jockey_running", "稳压泵运行", "Jockey pump running"),
    ("main_power_ok", "主电正常", "Main power OK"),
    ("backup_power_ok", "备电正常", "Backup power OK"),
    ("self_test_running", "巡检中", "Self-test running"),
    ("fire_alarm", "火警", "Fire alarm"),
    ("smoke", "烟雾", "Smoke"),
    ("ambient_temp_c", "环境温度", "Ambient temperature"),
    ("mains_voltage_v", "市电电压", "Mains voltage"),
    ("leakage_ma", "漏电电流", "Leakage current"),
    ("dropped_telemetry", "丢弃的数据", "Dropped telemetry"),
    ("dropped_events", "丢弃的事件", "Dropped events"),
];

/// Per-port metrics of a charging bay.
const PORT_METRICS: &[(&str, &str, &str)] = &[
    ("state", "端口状态", "Port state"),
    ("power_w", "功率", "Power"),
    ("current_a", "电流", "Current"),
    ("temp_c", "端口温度", "Port temperature"),
    ("energy_wh", "电量", "Energy"),
    ("session_s", "充电时长", "Session length"),
];

fn metrics<M: Copy + protocol::metric::MetricInfo>(
    rows: &[(&str, &str, &str)],
    all: &[M],
    name: fn(M) -> &'static str,
) -> Value {
    let mut out = Map::new();
    for m in all {
        let n = name(*m);
        let (zh, en) = rows
            .iter()
            .find(|(k, _, _)| *k == n)
            .map_or((n, n), |(_, zh, en)| (*zh, *en));
        out.insert(n.to_owned(), json!({ "zh": zh, "en": en, "unit": m.unit().symbol() }));
    }
    Value::Object(out)
}

/// The whole table, built once.
pub fn all() -> &'static Value {
    static TABLE: OnceLock<Value> = OnceLock::new();
    TABLE.get_or_init(|| {
        let codes: Map<String, Value> = EventCode::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str().to_owned(),
                    json!({
                        "zh": c.label_zh(),
                        "en": c.label_en(),
                        "class": c.class().map_or("gateway", DeviceClass::as_str),
                        "severity": c.severity().as_str(),
                    }),
                )
            })
            .collect();
        json!({
            "codes": codes,
            "classes": table(CLASSES),
            "alert_states": table(ALERT_STATES),
            "alert_changes": table(ALERT_CHANGES),
            "order_statuses": table(ORDER_STATUSES),
            "order_kinds": table(ORDER_KINDS),
            "steps": table(STEPS),
            "deadlines": table(DEADLINES),
            "severities": table(SEVERITIES),
            "device_status": table(DEVICE_STATUS),
            "roles": table(ROLES),
            "record_kinds": table(RECORD_KINDS),
            "command_ops": table(COMMAND_OPS),
            "command_statuses": table(COMMAND_STATUSES),
            "metrics": metrics(METRICS, Metric::ALL, Metric::as_str),
            "port_metrics": metrics(PORT_METRICS, PortMetric::ALL, PortMetric::as_str),
        })
    })
}

/// The Chinese label of a record: its kind's, and the code's when its body
/// names one (`告警触发 · 困人`).
#[must_use]
pub fn record_zh(kind: &str, body: &str) -> String {
    let kind_zh = RECORD_KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map_or(kind, |(_, zh, _)| *zh);
    let code = serde_json::from_str::<Value>(body).ok().and_then(|b| {
        let code = b
            .get("code")
            .or_else(|| b.pointer("/alert/code"))
            .or_else(|| b.pointer("/order/code"))?;
        code.as_str().map(EventCode::label_zh_of)
    });
    // A command's record names its op (`指令下发 · 切断端口`).
    let code = code.or_else(|| {
        let b = serde_json::from_str::<Value>(body).ok()?;
        let op = b.get("op")?.as_str()?;
        COMMAND_OPS.iter().find(|(k, _, _)| *k == op).map(|(_, zh, _)| *zh)
    });
    match code {
        Some(zh) if !zh.is_empty() => format!("{kind_zh} · {zh}"),
        _ => kind_zh.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value, table: &str) -> Vec<String> {
        v[table]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_wire_name_has_chinese_and_english() {
        let t = all();
        for c in EventCode::ALL {
            assert!(!c.label_en().is_empty() && !c.label_zh().is_empty(), "{c:?}");
        }
        for m in Metric::ALL {
            let row = &t["metrics"][m.as_str()];
            assert_ne!(row["zh"], m.as_str(), "metric {} has no Chinese label", m.as_str());
        }
        for m in PortMetric::ALL {
            assert_ne!(t["port_metrics"][m.as_str()]["zh"], m.as_str(), "{}", m.as_str());
        }
        for c in DeviceClass::ALL {
            assert!(keys(t, "classes").contains(&c.as_str().to_owned()), "{c:?}");
        }
        for s in protocol::Severity::ALL {
            assert!(keys(t, "severities").contains(&s.as_str().to_owned()), "{s:?}");
        }
        for s in [
            alerting::State::Pending,
            alerting::State::Firing,
            alerting::State::Acknowledged,
            alerting::State::Resolved,
        ] {
            assert!(keys(t, "alert_states").contains(&s.as_str().to_owned()), "{s:?}");
        }
        for s in [
            dispatch::Status::Dispatched,
            dispatch::Status::Responded,
            dispatch::Status::Arrived,
            dispatch::Status::Completed,
            dispatch::Status::FalseAlarm,
        ] {
            assert!(keys(t, "order_statuses").contains(&s.as_str().to_owned()), "{s:?}");
        }
        for r in [
            super::super::auth::Role::Admin,
            super::super::auth::Role::Engineer,
            super::super::auth::Role::Contractor,
            super::super::auth::Role::Auditor,
        ] {
            assert!(keys(t, "roles").contains(&r.as_str().to_owned()), "{r:?}");
        }
        for o in protocol::Op::ALL {
            assert!(keys(t, "command_ops").contains(&o.as_str().to_owned()), "{o:?}");
        }
        for s in crate::ops::commands::Status::ALL {
            assert!(keys(t, "command_statuses").contains(&s.as_str().to_owned()), "{s:?}");
        }
        // Every leaf is a {zh, en} pair.
        for (name, table) in t.as_object().unwrap() {
            for (k, row) in table.as_object().unwrap() {
                assert!(row["zh"].is_string() && row["en"].is_string(), "{name}.{k}");
            }
        }
    }

    #[test]
    fn a_records_label_names_its_kind_and_its_code() {
        assert_eq!(record_zh("alert_fired", r#"{"code":"trapped"}"#), "告警触发 · 困人");
        assert_eq!(
            record_zh("work_order_arrived", r#"{"change":"stepped","order":{"code":"smoke"}}"#),
            "到场 · 烟雾报警"
        );
        assert_eq!(record_zh("config_changed", r#"{"diff":"..."}"#), "配置变更");
        assert_eq!(record_zh("command_sent", r#"{"op":"cut_off"}"#), "指令下发 · 切断端口");
        assert_eq!(record_zh("something_new", "not json"), "something_new");
    }
}
