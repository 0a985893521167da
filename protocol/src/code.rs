//! Canonical event codes: what can go wrong, per class, with a default severity
//! and, for elevators, the GB/T 24476 fault number.

use crate::class::DeviceClass;
use crate::names::wire_names;

wire_names! {
    /// A fault or state a node or the gateway can raise.
    ///
    /// Ids leave room per class: elevator 0–31, fire 32–63, charging bay 64–95,
    /// raised by the gateway itself 96–127.
    pub enum EventCode ("event code") {
        /// Safety circuit open (GB/T 24476 01).
        SafetyCircuitBreak = 0 => "safety_circuit_break",
        /// Doors fail to close (02).
        DoorCloseFault = 1 => "door_close_fault",
        /// Doors fail to open (03).
        DoorOpenFault = 2 => "door_open_fault",
        /// Car stopped outside the door zone (04).
        StoppedOutsideDoorZone = 3 => "stopped_outside_door_zone",
        /// Car moves with the doors open (05, 开门走车).
        UnintendedMovement = 4 => "unintended_movement",
        /// Motor run-time limiter tripped (06).
        RunTimeLimiter = 5 => "run_time_limiter",
        /// The controller lost the car's position (07).
        PositionLost = 6 => "position_lost",
        /// Restart after a safety trip prevented (08).
        RestartPrevented = 7 => "restart_prevented",
        /// Car ran past the top terminal floor (冲顶).
        OvertravelTop = 8 => "overtravel_top",
        /// Car ran past the bottom terminal floor (蹲底).
        OvertravelBottom = 9 => "overtravel_bottom",
        /// Passengers trapped in the car (困人).
        Trapped = 10 => "trapped",
        /// Car at or above 1.2 × rated speed.
        Overspeed = 11 => "overspeed",
        /// Running with the doors not closed.
        DoorOpenWhileRunning = 12 => "door_open_while_running",
        /// Main power lost (41).
        PowerCut = 13 => "power_cut",
        /// Alarm button pressed in the car (90).
        AlarmButton = 14 => "alarm_button",
        /// An e-bike entered the car (电动车乘梯).
        EbikeInCar = 15 => "ebike_in_car",
        /// The building's fire alarm system is in alarm.
        FireAlarm = 32 => "fire_alarm",
        /// Start signal present but the pump does not run.
        PumpFailToStart = 33 => "pump_fail_to_start",
        /// The pump cabinet reports a fault.
        PumpFault = 34 => "pump_fault",
        /// Network pressure below the minimum.
        LowPressure = 35 => "low_pressure",
        /// Fire water tank below its minimum level.
        LowTankLevel = 36 => "low_tank_level",
        /// The pump cabinet is not in auto-start.
        NotInAuto = 37 => "not_in_auto",
        /// Main supply lost.
        MainPowerFault = 38 => "main_power_fault",
        /// Backup supply lost.
        BackupPowerFault = 39 => "backup_power_fault",
        /// A weekly self-test (巡检) run finished; `detail.ok` says whether the pump
        /// started and built pressure. Not a fault: the record of a periodic duty.
        SelfTest = 40 => "self_test",
        /// A port is too hot (the node cuts it off).
        OverTemperature = 64 => "over_temperature",
        /// A port draws more than its rated current.
        OverCurrent = 65 => "over_current",
        /// Smoke in the bay (all ports cut off).
        Smoke = 66 => "smoke",
        /// Leakage current at or above the limit.
        Leakage = 67 => "leakage",
        /// A charging session ran too long (the port is cut off).
        ChargeTimeout = 68 => "charge_timeout",
        /// A full battery left on the port (the port is cut off).
        FullCutoff = 69 => "full_cutoff",
        /// A port's temperature climbs fast while below the cut-off limit: the
        /// early sign of a battery going into thermal runaway. Raised by the
        /// gateway's rate-of-change rule, before `over_temperature`.
        TempRising = 70 => "temp_rising",
        /// The node is offline: a `death`, or silence for 3 × its interval.
        Offline = 96 => "offline",
        /// The gateway lost its MQTT broker: every MQTT device is unknown, so
        /// this one alert stands for all of their silences.
        UplinkLost = 97 => "uplink_lost",
        /// Every device on one Modbus bus (or endpoint) went silent together:
        /// the bus is the root cause, not the devices.
        BusDown = 98 => "bus_down",
        /// Every device of a compound went silent together: its network or
        /// power is gone, one alert stands for all of them.
        SiteUnreachable = 99 => "site_unreachable",
        /// A polled Modbus slave answers every read with an exception, poll
        /// after poll: it is reachable (not `offline`) but gives no value, a
        /// fault of the device, not of its line (`bus_down`).
        ModbusException = 100 => "modbus_exception",
    }
}

wire_names! {
    /// How bad a fault is, by default. Rules may override it per site.
    ///
    /// Critical faults (fire, people trapped or hurt, smoke) are never queued
    /// behind bulk telemetry and always notify.
    pub enum Severity ("severity") {
        /// People are in danger now.
        Critical = 0 => "critical",
        /// Equipment out of service or a safety function impaired.
        Major = 1 => "major",
        /// Degraded, needs attention in working hours.
        Minor = 2 => "minor",
        /// Information, not a fault.
        Info = 3 => "info",
    }
}

impl EventCode {
    /// The class whose devices raise this code; `None` for codes of any class
    /// (`offline`).
    #[must_use]
    pub const fn class(self) -> Option<DeviceClass> {
        match self as u8 {
            0..=31 => Some(DeviceClass::Elevator),
            32..=63 => Some(DeviceClass::Firepump),
            64..=95 => Some(DeviceClass::Charger),
            _ => None,
        }
    }

    /// The codes a device of `class` can raise, including class-less ones.
    pub fn of_class(class: DeviceClass) -> impl Iterator<Item = EventCode> {
        EventCode::ALL
            .iter()
            .copied()
            .filter(move |c| c.class().is_none_or(|k| k == class))
    }

    /// The default severity (see `docs/protocol.md` for the reasoning).
    #[must_use]
    pub const fn severity(self) -> Severity {
        use EventCode::{
            BackupPowerFault, ChargeTimeout, DoorOpenWhileRunning, EbikeInCar, FireAlarm, FullCutoff, OverCurrent,
            OvertravelBottom, OvertravelTop, PositionLost, PumpFailToStart, SelfTest, Smoke, Trapped,
            UnintendedMovement,
        };
        match self {
            Trapped | UnintendedMovement | DoorOpenWhileRunning | OvertravelTop | OvertravelBottom | FireAlarm
            | PumpFailToStart | Smoke => Severity::Critical,
            PositionLost | EbikeInCar | BackupPowerFault | OverCurrent | ChargeTimeout => Severity::Minor,
            FullCutoff | SelfTest => Severity::Info,
            _ => Severity::Major,
        }
    }

    /// The GB/T 24476 fault number, for elevator codes that have one.
    #[must_use]
    pub const fn gbt24476(self) -> Option<u8> {
        match self {
            EventCode::SafetyCircuitBreak => Some(1),
            EventCode::DoorCloseFault => Some(2),
            EventCode::DoorOpenFault => Some(3),
            EventCode::StoppedOutsideDoorZone => Some(4),
            EventCode::UnintendedMovement => Some(5),
            EventCode::RunTimeLimiter => Some(6),
            EventCode::PositionLost => Some(7),
            EventCode::RestartPrevented => Some(8),
            EventCode::PowerCut => Some(41),
            EventCode::AlarmButton => Some(90),
            _ => None,
        }
    }

    /// The Chinese label property staff and bureaus use.
    #[must_use]
    pub const fn label_zh(self) -> &'static str {
        match self {
            EventCode::SafetyCircuitBreak => "安全回路断路",
            EventCode::DoorCloseFault => "关门故障",
            EventCode::DoorOpenFault => "开门故障",
            EventCode::StoppedOutsideDoorZone => "门区外停梯",
            EventCode::UnintendedMovement => "开门走车",
            EventCode::RunTimeLimiter => "运行时间限制器动作",
            EventCode::PositionLost => "楼层位置丢失",
            EventCode::RestartPrevented => "防止电梯再运行",
            EventCode::OvertravelTop => "冲顶",
            EventCode::OvertravelBottom => "蹲底",
            EventCode::Trapped => "困人",
            EventCode::Overspeed => "超速",
            EventCode::DoorOpenWhileRunning => "运行中开门",
            EventCode::PowerCut => "停电",
            EventCode::AlarmButton => "报警按钮",
            EventCode::EbikeInCar => "电动车乘梯",
            EventCode::FireAlarm => "火警",
            EventCode::PumpFailToStart => "消防泵启动失败",
            EventCode::PumpFault => "消防泵故障",
            EventCode::LowPressure => "管网压力低",
            EventCode::LowTankLevel => "水箱水位低",
            EventCode::NotInAuto => "未处于自动状态",
            EventCode::MainPowerFault => "主电故障",
            EventCode::BackupPowerFault => "备电故障",
            EventCode::SelfTest => "巡检",
            EventCode::OverTemperature => "端口过温",
            EventCode::OverCurrent => "端口过流",
            EventCode::Smoke => "烟雾报警",
            EventCode::Leakage => "漏电",
            EventCode::ChargeTimeout => "充电超时",
            EventCode::FullCutoff => "充满断电",
            EventCode::TempRising => "端口温度骤升",
            EventCode::Offline => "离线",
            EventCode::UplinkLost => "网关与消息服务器断开",
            EventCode::BusDown => "总线故障",
            EventCode::SiteUnreachable => "小区失联",
            EventCode::ModbusException => "从站拒绝应答",
        }
    }

    /// The Chinese label of a code by its wire name; `""` for a name this
    /// build does not know (a newer node's, or a rule's own code).
    #[must_use]
    pub fn label_zh_of(name: &str) -> &'static str {
        EventCode::from_name(name).map_or("", EventCode::label_zh)
    }

    /// The English label, shown beside the Chinese one.
    #[must_use]
    pub const fn label_en(self) -> &'static str {
        match self {
            EventCode::SafetyCircuitBreak => "Safety circuit open",
            EventCode::DoorCloseFault => "Doors fail to close",
            EventCode::DoorOpenFault => "Doors fail to open",
            EventCode::StoppedOutsideDoorZone => "Stopped outside the door zone",
            EventCode::UnintendedMovement => "Car moving with doors open",
            EventCode::RunTimeLimiter => "Run-time limiter tripped",
            EventCode::PositionLost => "Car position lost",
            EventCode::RestartPrevented => "Restart prevented",
            EventCode::OvertravelTop => "Overtravel at the top",
            EventCode::OvertravelBottom => "Overtravel at the bottom",
            EventCode::Trapped => "Passengers trapped",
            EventCode::Overspeed => "Overspeed",
            EventCode::DoorOpenWhileRunning => "Running with doors open",
            EventCode::PowerCut => "Power cut",
            EventCode::AlarmButton => "Alarm button pressed",
            EventCode::EbikeInCar => "E-bike in the car",
            EventCode::FireAlarm => "Fire alarm",
            EventCode::PumpFailToStart => "Fire pump failed to start",
            EventCode::PumpFault => "Fire pump fault",
            EventCode::LowPressure => "Low network pressure",
            EventCode::LowTankLevel => "Low tank level",
            EventCode::NotInAuto => "Not in automatic mode",
            EventCode::MainPowerFault => "Main power fault",
            EventCode::BackupPowerFault => "Backup power fault",
            EventCode::SelfTest => "Pump self-test",
            EventCode::OverTemperature => "Port over temperature",
            EventCode::OverCurrent => "Port over current",
            EventCode::Smoke => "Smoke",
            EventCode::Leakage => "Leakage current",
            EventCode::ChargeTimeout => "Charge timeout",
            EventCode::FullCutoff => "Cut off when full",
            EventCode::TempRising => "Port temperature rising fast",
            EventCode::Offline => "Offline",
            EventCode::UplinkLost => "Gateway lost its broker",
            EventCode::BusDown => "Bus down",
            EventCode::SiteUnreachable => "Compound unreachable",
            EventCode::ModbusException => "Slave refused to answer",
        }
    }

    /// Whether the code is a state that is raised and later cleared. `self_test`
    /// is not: it is a one-shot record of a finished run, so it has no Modbus
    /// bit and never becomes an open alert.
    #[must_use]
    pub const fn is_state(self) -> bool {
        !matches!(self, EventCode::SelfTest)
    }

    /// Whether the code concerns one port of a charging bay (its events carry
    /// `detail.port`).
    #[must_use]
    pub const fn is_per_port(self) -> bool {
        matches!(
            self,
            EventCode::OverTemperature
                | EventCode::OverCurrent
                | EventCode::ChargeTimeout
                | EventCode::FullCutoff
                | EventCode::TempRising
        )
    }
}
