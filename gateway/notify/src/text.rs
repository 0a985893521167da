//! The words people read on a phone: one builder for the WeCom and DingTalk
//! group robots and for SMS, Chinese first with English beside it.
//!
//! # Why one builder
//!
//! Property staff read the same alert in a WeCom group, a DingTalk group and
//! an SMS; if each channel worded it on its own, the three would drift (a
//! building left out of one, a time in UTC in another). So the gateway hands
//! every message the *facts* ([`Notice`]: what happened, where, how bad,
//! when), and this module turns them into words once: a title, the detail
//! lines, and a short form for SMS. The channels only wrap them in their own
//! markup.
//!
//! Times are China's (Asia/Shanghai, UTC+8 all year: China has had no
//! daylight saving time since 1991), written with their offset
//! (`2026-12-01 08:00:00 +08:00`) so nobody has to guess the zone.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::macros::{format_description, offset};

use crate::Message;

/// What a message is about, as facts, so every people-facing channel words
/// it the same way (see the module docs). It travels inside [`Message`]
/// (and so in the outbox table and the webhook's JSON): additive, and an
/// older message without it falls back to its `subject` and `text`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The message kind (`alert_notification`, `order_dispatched`, …).
    pub kind: String,
    /// The compound.
    pub site: String,
    /// The building, where the device is assigned to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// When it was decided (unix ms).
    pub at: i64,
    /// People are in danger now (a critical alert, a trapped passenger past
    /// the bureau's limit): the robots then @-mention the on-duty phones.
    #[serde(default)]
    pub critical: bool,
    /// The work order it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderFacts>,
    /// The alerts it is about (a grouped notification has several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertFacts>,
}

/// One alert in a notice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFacts {
    /// The alert episode's number.
    pub id: u64,
    /// The event code (`trapped`).
    pub code: String,
    /// The device.
    pub device: String,
    /// The charging port, for per-port codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
    /// `critical`, `major`, `minor` or `info`.
    pub severity: String,
    /// Resolved rather than firing.
    #[serde(default)]
    pub resolved: bool,
    /// When it fired (or resolved), unix ms.
    pub at: i64,
}

/// The work order in a notice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// The order's number.
    pub id: u64,
    /// The fault code, or the periodic duty's name.
    pub code: String,
    /// The device.
    pub device: String,
    /// The charging port, for per-port codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
    /// The alert's severity, `info` for duties.
    pub severity: String,
    /// `dispatched`, `responded`, `arrived`, `completed`, `false_alarm`.
    pub status: String,
    /// Who has it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contractor: Option<String>,
    /// The next deadline the contractor must meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Due>,
}

/// A deadline of an order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    /// `respond`, `arrive` or `complete`.
    pub step: String,
    /// By when (unix ms).
    pub at: i64,
}

/// The trailer of every robot message. A DingTalk robot secured by "custom
/// keywords" only posts messages containing one: `设施安全网关` is in every
/// message, so that is the keyword to configure.
pub const SIGNATURE: &str = "设施安全网关 facility-safety gateway";

/// The words of one message, ready for a channel's markup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Words {
    /// One line: a group message's heading, a notification's title.
    pub title: String,
    /// The detail, one fact per line, Chinese first with English beside.
    pub lines: Vec<String>,
    /// The short Chinese form (SMS), most important facts first.
    pub short_zh: String,
    /// The short English form, added after the Chinese when it fits.
    pub short_en: String,
    /// Whether people are in danger now (mentions on the robots).
    pub critical: bool,
}

impl Words {
    /// The title and the lines as plain text (a mail body, a WeCom `text`).
    #[must_use]
    pub fn plain(&self) -> String {
        let mut out = self.title.clone();
        for l in &self.lines {
            out.push('\n');
            out.push_str(l);
        }
        out
    }

    /// The SMS text in at most `max_chars` characters (see [`sms_text`]).
    #[must_use]
    pub fn sms(&self, max_chars: usize) -> String {
        sms_text(&self.short_zh, &self.short_en, max_chars)
    }
}

/// The words of `msg`: from its [`Notice`] when it has one, else (a message
/// queued by an older version, or one without facts) from its subject and
/// text.
#[must_use]
pub fn words(msg: &Message) -> Words {
    match &msg.notice {
        Some(n) => n.words(),
        None => Words {
            title: msg.subject.clone(),
            lines: msg
                .text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            short_zh: one_line(&msg.subject),
            short_en: String::new(),
            critical: false,
        },
    }
}

impl Notice {
    /// The words of this notice.
    #[must_use]
    pub fn words(&self) -> Words {
        Words {
            title: self.title(),
            lines: self.lines(),
            short_zh: self.short_zh(),
            short_en: self.short_en(),
            critical: self.critical,
        }
    }

    /// The alerts that matter most: the firing ones, or, when only
    /// resolutions are left, those.
    fn headline_alerts(&self) -> (Vec<&AlertFacts>, bool) {
        let firing: Vec<&AlertFacts> = self.alerts.iter().filter(|a| !a.resolved).collect();
        if firing.is_empty() {
            (self.alerts.iter().collect(), true)
        } else {
            (firing, false)
        }
    }

    /// What happened, in Chinese and English (`紧急告警`, `Critical alert`).
    fn kind_label(&self) -> (&str, &str) {
        match self.kind.as_str() {
            "alert_notification" => {
                if self.alerts.iter().all(|a| a.resolved) && !self.alerts.is_empty() {
                    ("告警恢复", "Resolved")
                } else if self.critical {
                    ("紧急告警", "Critical alert")
                } else {
                    ("告警", "Alert")
                }
            }
            "order_dispatched" => ("新工单", "New work order"),
            "order_redispatched" => ("工单改派", "Work order re-dispatched"),
            "order_escalated" => ("工单超时", "Work order overdue"),
            "bureau_flag" => ("上报监管", "Flagged to the bureau"),
            "duty_missed" => ("定期任务逾期", "Periodic duty missed"),
            other => ("通知", other),
        }
    }

    /// The compound and building: `lakeside 3号楼`.
    fn place(&self) -> String {
        match &self.building {
            Some(b) if !b.is_empty() => format!("{} {b}", self.site),
            _ => self.site.clone(),
        }
    }

    /// The one-line title, Chinese first.
    #[must_use]
    pub fn title(&self) -> String {
        let (zh, en) = self.kind_label();
        let head = format!("【{zh} {en}】");
        if let Some(o) = &self.order {
            return format!(
                "{head}#{} {} · {} {}",
                o.id,
                code_label(&o.code),
                self.place(),
                device_label(&o.device, o.port)
            );
        }
        let (alerts, resolved_only) = self.headline_alerts();
        match alerts.as_slice() {
            [] => format!("{head}{}", self.place()),
            [a] => format!(
                "{head}{} · {} {}",
                code_label(&a.code),
                self.place(),
                device_label(&a.device, a.port)
            ),
            many => {
                let resolved = self.alerts.iter().filter(|a| a.resolved).count();
                if resolved_only {
                    format!("{head}{}：{} 条恢复 resolved", self.place(), many.len())
                } else if resolved == 0 {
                    format!("{head}{}：{} 条告警 firing", self.place(), many.len())
                } else {
                    format!(
                        "{head}{}：{} 条告警 firing，{resolved} 条恢复 resolved",
                        self.place(),
                        many.len()
                    )
                }
            }
        }
    }

    /// The detail lines, one fact each, Chinese first with English beside.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("位置 where：{}", self.place())];
        if let Some(o) = &self.order {
            lines.push(format!(
                "工单 work order #{}：{}（{}）",
                o.id,
                code_label(&o.code),
                severity_label(&o.severity)
            ));
            lines.push(format!("设备 device：{}", device_label(&o.device, o.port)));
            let (zh, en) = status_label(&o.status);
            lines.push(format!(
                "状态 status：{zh} {en} · 承接 contractor：{}",
                o.contractor.as_deref().unwrap_or("-")
            ));
            if let Some(d) = &o.due {
                let (zh, en) = step_label(&d.step);
                lines.push(format!("时限 deadline：{zh} {en} by {}", china_time(d.at)));
            }
        }
        for a in &self.alerts {
            let what = if a.resolved { "恢复 resolved" } else { "告警 firing" };
            lines.push(format!(
                "{what} #{}：{}（{}）· 设备 device {} · {}",
                a.id,
                code_label(&a.code),
                severity_label(&a.severity),
                device_label(&a.device, a.port),
                china_time(a.at)
            ));
        }
        lines.push(format!("时间 time：{}", china_time(self.at)));
        lines
    }

    /// The short Chinese form: the most important facts first, so that a
    /// cut (see [`sms_text`]) loses the least.
    #[must_use]
    pub fn short_zh(&self) -> String {
        let (zh, _) = self.kind_label();
        let when = china_time_short(self.at);
        if let Some(o) = &self.order {
            let mut s = format!(
                "【{zh}】#{} {}，{} {}",
                o.id,
                label_zh_or_code(&o.code),
                self.place(),
                device_label_zh(&o.device, o.port)
            );
            if let Some(d) = &o.due {
                let _ = write!(s, "，{}时限 {}", step_label(&d.step).0, china_time_short(d.at));
            } else {
                let _ = write!(s, "，{when}");
            }
            return s;
        }
        let (alerts, resolved_only) = self.headline_alerts();
        match alerts.as_slice() {
            [] => format!("【{zh}】{}，{when}", self.place()),
            [a] => format!(
                "【{zh}】{}，{} {}，{when}",
                label_zh_or_code(&a.code),
                self.place(),
                device_label_zh(&a.device, a.port)
            ),
            [a, ..] => format!(
                "【{zh}】{} {} {}等 {} 条{}，{when}",
                self.place(),
                label_zh_or_code(&a.code),
                device_label_zh(&a.device, a.port),
                alerts.len(),
                if resolved_only { "恢复" } else { "告警" }
            ),
        }
    }

    /// The short English form, beside the Chinese when the length allows.
    #[must_use]
    pub fn short_en(&self) -> String {
        let (_, en) = self.kind_label();
        if let Some(o) = &self.order {
            let mut s = format!("{en} #{}: {} {}", o.id, label_en(&o.code), o.device);
            if let Some(d) = &o.due {
                let _ = write!(s, ", {} by {}", d.step, clock(d.at));
            }
            return s;
        }
        let (alerts, _) = self.headline_alerts();
        match alerts.as_slice() {
            [] => en.to_owned(),
            [a] => format!("{en}: {} {}", label_en(&a.code), a.device),
            [a, ..] => format!("{en}: {} {} and {} more", label_en(&a.code), a.device, alerts.len() - 1),
        }
    }
}

/// A code's English label (`Passengers trapped`), or its wire name.
fn label_en(code: &str) -> &str {
    match protocol::EventCode::from_name(code) {
        Some(c) => c.label_en(),
        None => code,
    }
}

/// A code's Chinese label and its wire name (`困人 trapped`); the name
/// alone for a code this build has no label for.
#[must_use]
pub fn code_label(code: &str) -> String {
    match label_zh(code) {
        "" => code.to_owned(),
        zh => format!("{zh} {code}"),
    }
}

/// The Chinese label of a code (`protocol::EventCode::label_zh`), or of a
/// periodic duty; `""` when there is none.
fn label_zh(code: &str) -> &'static str {
    match protocol::EventCode::from_name(code) {
        Some(c) => c.label_zh(),
        None => match code {
            "maintenance" => "维保",
            _ => "",
        },
    }
}

/// The Chinese label, or the code where there is none (SMS, `{label}`).
pub(crate) fn label_zh_or_code(code: &str) -> String {
    match label_zh(code) {
        "" => code.to_owned(),
        zh => zh.to_owned(),
    }
}

/// `紧急 critical`.
fn severity_label(severity: &str) -> String {
    let zh = match severity {
        "critical" => "紧急",
        "major" => "重要",
        "minor" => "一般",
        "info" => "提示",
        _ => return severity.to_owned(),
    };
    format!("{zh} {severity}")
}

fn status_label(status: &str) -> (&'static str, &str) {
    let zh = match status {
        "dispatched" => "已派单",
        "responded" => "已响应",
        "arrived" => "已到场",
        "completed" => "已完成",
        "false_alarm" => "误报",
        _ => "",
    };
    (zh, status)
}

fn step_label(step: &str) -> (&'static str, &str) {
    let zh = match step {
        "respond" => "响应",
        "arrive" => "到场",
        "complete" => "完成",
        _ => "",
    };
    (zh, step)
}

fn device_label(device: &str, port: Option<u8>) -> String {
    match port {
        Some(p) => format!("{device} 端口 port {p}"),
        None => device.to_owned(),
    }
}

fn device_label_zh(device: &str, port: Option<u8>) -> String {
    match port {
        Some(p) => format!("{device} {p}号口"),
        None => device.to_owned(),
    }
}

/// A time in China with its offset: `2026-12-01 08:00:00 +08:00`.
#[must_use]
pub fn china_time(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +08:00");
    in_china(ms)
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Month, day and minutes in China (`12-01 08:00`): an SMS has no room for more.
fn china_time_short(ms: i64) -> String {
    let format = format_description!("[month]-[day] [hour]:[minute]");
    in_china(ms).and_then(|t| t.format(&format).ok()).unwrap_or_default()
}

/// Hours and minutes in China (`08:03`).
fn clock(ms: i64) -> String {
    let format = format_description!("[hour]:[minute]");
    in_china(ms).and_then(|t| t.format(&format).ok()).unwrap_or_default()
}

fn in_china(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| t.to_offset(offset!(+8)))
}

/// The SMS text in at most `max_chars` characters (Unicode scalar values:
/// one Chinese character is one character of a segment):
///
/// 1. the Chinese form, a space and the English form, when both fit;
/// 2. else the Chinese form alone, when it fits;
/// 3. else the Chinese form cut to `max_chars - 1` characters and `…`.
///
/// One SMS segment holds 70 characters of Chinese (UCS-2); a longer text is
/// sent by carriers as several segments of 67, each charged. Cutting rather
/// than splitting keeps an alert to one predictable SMS, and the Chinese
/// form puts what matters first (what, where, when), so a cut loses the
/// least: the full text is in the groups and the console.
#[must_use]
pub fn sms_text(zh: &str, en: &str, max_chars: usize) -> String {
    let zh = one_line(zh);
    let en = one_line(en);
    let zh_len = zh.chars().count();
    if !en.is_empty() && zh_len + 1 + en.chars().count() <= max_chars {
        return format!("{zh} {en}");
    }
    if zh_len <= max_chars {
        return zh;
    }
    let mut cut: String = zh.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// At most `max` bytes of `text`, cut at a character boundary and ended with
/// `…` when cut: the robots refuse a message over their limit outright.
#[must_use]
pub fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 08:00:00 +08:00.
    const AT: i64 = 1_796_083_200_000;

    fn smoke() -> Notice {
        Notice {
            kind: "alert_notification".into(),
            site: "lakeside".into(),
            building: Some("3号楼".into()),
            at: AT,
            critical: true,
            order: None,
            alerts: vec![AlertFacts {
                id: 7,
                code: "smoke".into(),
                device: "CH-1".into(),
                port: None,
                severity: "critical".into(),
                resolved: false,
                at: AT - 5_000,
            }],
        }
    }

    fn order() -> Notice {
        Notice {
            kind: "order_dispatched".into(),
            site: "lakeside".into(),
            building: None,
            at: AT,
            critical: true,
            order: Some(OrderFacts {
                id: 12,
                code: "trapped".into(),
                device: "EL-3".into(),
                port: None,
                severity: "critical".into(),
                status: "dispatched".into(),
                contractor: Some("acme".into()),
                due: Some(Due {
                    step: "respond".into(),
                    at: AT + 180_000,
                }),
            }),
            alerts: Vec::new(),
        }
    }

    #[test]
    fn times_are_chinas_with_the_offset() {
        assert_eq!(china_time(AT), "2026-12-01 08:00:00 +08:00");
        // Midnight UTC is 08:00 in China; 16:00 UTC is the next day there.
        assert_eq!(china_time(AT + 16 * 3_600_000), "2026-12-02 00:00:00 +08:00");
        assert_eq!(china_time_short(AT + 180_000), "12-01 08:03");
        assert_eq!(clock(AT + 180_000), "08:03");
    }

    #[test]
    fn an_alert_reads_chinese_first_with_english_beside() {
        let w = smoke().words();
        assert_eq!(
            w.title,
            "【紧急告警 Critical alert】烟雾报警 smoke · lakeside 3号楼 CH-1"
        );
        assert_eq!(
            w.lines,
            [
                "位置 where：lakeside 3号楼",
                "告警 firing #7：烟雾报警 smoke（紧急 critical）· 设备 device CH-1 · 2026-12-01 07:59:55 +08:00",
                "时间 time：2026-12-01 08:00:00 +08:00",
            ]
        );
        assert_eq!(w.short_zh, "【紧急告警】烟雾报警，lakeside 3号楼 CH-1，12-01 08:00");
        assert_eq!(w.short_en, "Critical alert: Smoke CH-1");
        assert!(w.critical);
        assert_eq!(
            w.sms(70),
            "【紧急告警】烟雾报警，lakeside 3号楼 CH-1，12-01 08:00 Critical alert: Smoke CH-1"
        );
    }

    #[test]
    fn the_labels_come_from_the_protocol() {
        for code in ["trapped", "smoke", "low_pressure", "pump_fail_to_start"] {
            let zh = protocol::EventCode::from_name(code).unwrap().label_zh();
            assert_eq!(code_label(code), format!("{zh} {code}"));
        }
        assert_eq!(code_label("maintenance"), "维保 maintenance");
        assert_eq!(code_label("a_rule_of_our_own"), "a_rule_of_our_own");
    }

    #[test]
    fn an_order_names_its_deadline() {
        let w = order().words();
        assert_eq!(w.title, "【新工单 New work order】#12 困人 trapped · lakeside EL-3");
        assert!(
            w.lines
                .contains(&"状态 status：已派单 dispatched · 承接 contractor：acme".to_owned())
        );
        assert!(
            w.lines
                .contains(&"时限 deadline：响应 respond by 2026-12-01 08:03:00 +08:00".to_owned())
        );
        assert_eq!(w.short_zh, "【新工单】#12 困人，lakeside EL-3，响应时限 12-01 08:03");
        assert_eq!(
            w.short_en,
            "New work order #12: Passengers trapped EL-3, respond by 08:03"
        );
    }

    #[test]
    fn a_group_counts_firing_and_resolved() {
        let mut n = smoke();
        n.critical = false;
        let mut second = n.alerts[0].clone();
        second.id = 8;
        second.code = "over_temperature".into();
        second.port = Some(2);
        let mut gone = n.alerts[0].clone();
        gone.id = 5;
        gone.resolved = true;
        n.alerts.extend([second, gone]);
        let w = n.words();
        assert_eq!(
            w.title,
            "【告警 Alert】lakeside 3号楼：2 条告警 firing，1 条恢复 resolved"
        );
        assert_eq!(w.lines.len(), 5);
        assert!(w.lines[2].contains("设备 device CH-1 端口 port 2"), "{:?}", w.lines);
        assert!(w.lines[3].starts_with("恢复 resolved #5"), "{:?}", w.lines);
        assert_eq!(
            w.short_zh,
            "【告警】lakeside 3号楼 烟雾报警 CH-1等 2 条告警，12-01 08:00"
        );
        // Only resolutions left: said so.
        n.alerts.retain(|a| a.resolved);
        assert_eq!(
            n.words().title,
            "【告警恢复 Resolved】烟雾报警 smoke · lakeside 3号楼 CH-1"
        );
    }

    #[test]
    fn sms_keeps_chinese_first_and_cuts_what_does_not_fit() {
        // Both fit: Chinese, a space, English.
        assert_eq!(sms_text("困人", "trapped", 10), "困人 trapped");
        // English does not fit: left out.
        assert_eq!(sms_text("困人", "trapped", 9), "困人");
        // Chinese alone too long: cut, with an ellipsis, to the limit.
        let zh = "电".repeat(75);
        let cut = sms_text(&zh, "x", 70);
        assert_eq!(cut.chars().count(), 70);
        assert!(cut.ends_with('…'));
        // Line breaks never reach an SMS.
        assert_eq!(sms_text("a\nb", "", 70), "a b");
        // A whole order notice fits one segment in Chinese.
        assert!(order().words().sms(70).chars().count() <= 70);
    }

    #[test]
    fn byte_cuts_end_on_a_character() {
        assert_eq!(cut_bytes("困人", 6), "困人");
        let cut = cut_bytes("困人困人", 7);
        assert!(cut.len() <= 7, "{cut}");
        assert_eq!(cut, "困…");
    }

    #[test]
    fn a_message_without_facts_uses_its_subject_and_text() {
        let msg = Message {
            id: "m".into(),
            kind: "order_dispatched".into(),
            site: "lakeside".into(),
            subject: "[order_dispatched] #1 困人 trapped".into(),
            text: "工单 work order #1\n\n位置 where: lakeside".into(),
            body: serde_json::Value::Null,
            notice: None,
        };
        let w = words(&msg);
        assert_eq!(w.title, msg.subject);
        assert_eq!(w.lines, ["工单 work order #1", "位置 where: lakeside"]);
        assert_eq!(w.sms(70), "[order_dispatched] #1 困人 trapped");
    }

    #[test]
    fn a_notice_round_trips_and_reads_back_without_optional_fields() {
        let n = order();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), n);
        let bare: Notice = serde_json::from_str(r#"{"kind":"duty_missed","site":"s","at":0}"#).unwrap();
        assert_eq!(bare.words().title, "【定期任务逾期 Periodic duty missed】s");
    }
}
