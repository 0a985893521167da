//! Application data units (应用数据单元, §8): a type flag, an object count,
//! the objects. The types a user information transmission device sends
//! (1, 2, 3, 21, 28) and the centre's requests it answers (81, 88, 90);
//! any other type is kept as its bytes.

use crate::frame::{EncodeError, MAX_DATA, TimeLabel};

/// Type flags (类型标志, table 3).
pub mod type_flag {
    /// 1 上传建筑消防设施系统状态: a fire facility system's state.
    pub const SYSTEM_STATUS: u8 = 1;
    /// 2 上传建筑消防设施部件运行状态: a component's running status.
    pub const COMPONENT_STATUS: u8 = 2;
    /// 3 上传建筑消防设施部件模拟量值: a component's analog value.
    pub const COMPONENT_ANALOG: u8 = 3;
    /// 21 上传用户信息传输装置运行状态: the device's own running status.
    pub const DEVICE_STATUS: u8 = 21;
    /// 28 上传用户信息传输装置系统时间: the device's clock.
    pub const DEVICE_TIME: u8 = 28;
    /// 61–68 读建筑消防设施…: the centre reads a facility's state (61 system
    /// status, 62 component status, 63 analog values, 64 operations,
    /// 65 software version, 66 system configuration, 67 component
    /// configuration, 68 system time).
    pub const READ_FACILITY_FIRST: u8 = 61;
    /// The last of the facility reads.
    pub const READ_FACILITY_LAST: u8 = 68;
    /// 81 读用户信息传输装置运行状态: the centre reads the device's status.
    pub const READ_DEVICE_STATUS: u8 = 81;
    /// 84 读用户信息传输装置操作信息记录.
    pub const READ_DEVICE_OPERATIONS: u8 = 84;
    /// 85 读用户信息传输装置软件版本.
    pub const READ_DEVICE_VERSION: u8 = 85;
    /// 86 读用户信息传输装置配置情况.
    pub const READ_DEVICE_CONFIG: u8 = 86;
    /// 88 读用户信息传输装置系统时间: the centre reads the device's clock.
    pub const READ_DEVICE_TIME: u8 = 88;
    /// 89 初始化用户信息传输装置.
    pub const INIT_DEVICE: u8 = 89;
    /// 90 同步用户信息传输装置时钟: the centre sets the device's clock.
    pub const SYNC_TIME: u8 = 90;
    /// 91 查岗命令: the centre checks that someone is on duty.
    pub const INSPECT: u8 = 91;
}

/// Component status bits (部件状态, 2 bytes, low byte first); a bit set
/// means the state holds. Bits 9–15 are reserved.
pub mod component_status {
    /// bit 0: 1 normal running (正常运行), 0 test (测试).
    pub const NORMAL: u16 = 1 << 0;
    /// bit 1: fire alarm (火警).
    pub const FIRE_ALARM: u16 = 1 << 1;
    /// bit 2: fault (故障).
    pub const FAULT: u16 = 1 << 2;
    /// bit 3: shielded (屏蔽).
    pub const SHIELDED: u16 = 1 << 3;
    /// bit 4: supervisory (监管).
    pub const SUPERVISE: u16 = 1 << 4;
    /// bit 5: started / open (启动（开启）); 0 stopped / closed.
    pub const STARTED: u16 = 1 << 5;
    /// bit 6: feedback (反馈).
    pub const FEEDBACK: u16 = 1 << 6;
    /// bit 7: delay (延时状态).
    pub const DELAY: u16 = 1 << 7;
    /// bit 8: power fault (电源故障). Components have one power bit; the
    /// separate main and backup power bits are the system status's (type 1).
    pub const POWER_FAULT: u16 = 1 << 8;
}

/// System status bits (系统状态, type 1, 2 bytes, low byte first).
pub mod system_status {
    /// bit 0: 1 normal running, 0 test.
    pub const NORMAL: u16 = 1 << 0;
    /// bit 1: fire alarm.
    pub const FIRE_ALARM: u16 = 1 << 1;
    /// bit 2: fault.
    pub const FAULT: u16 = 1 << 2;
    /// bit 3: shielded.
    pub const SHIELDED: u16 = 1 << 3;
    /// bit 4: supervisory.
    pub const SUPERVISE: u16 = 1 << 4;
    /// bit 5: started.
    pub const STARTED: u16 = 1 << 5;
    /// bit 6: feedback.
    pub const FEEDBACK: u16 = 1 << 6;
    /// bit 7: delay.
    pub const DELAY: u16 = 1 << 7;
    /// bit 8: main power fault (主电故障).
    pub const MAIN_POWER_FAULT: u16 = 1 << 8;
    /// bit 9: backup power fault (备电故障).
    pub const BACKUP_POWER_FAULT: u16 = 1 << 9;
    /// bit 10: bus fault (总线故障).
    pub const BUS_FAULT: u16 = 1 << 10;
    /// bit 11: manual (手动状态).
    pub const MANUAL: u16 = 1 << 11;
    /// bit 12: configuration changed (配置改变).
    pub const CONFIG_CHANGED: u16 = 1 << 12;
    /// bit 13: reset (复位).
    pub const RESET: u16 = 1 << 13;
}

/// The device's own status bits (用户信息传输装置运行状态, type 21, 1 byte).
pub mod device_status {
    /// bit 0: 1 normal monitoring (正常监视), 0 test.
    pub const NORMAL: u8 = 1 << 0;
    /// bit 1: fire alarm (火警).
    pub const FIRE_ALARM: u8 = 1 << 1;
    /// bit 2: fault (故障).
    pub const FAULT: u8 = 1 << 2;
    /// bit 3: main power fault (主电故障).
    pub const MAIN_POWER_FAULT: u8 = 1 << 3;
    /// bit 4: backup power fault (备电故障).
    pub const BACKUP_POWER_FAULT: u8 = 1 << 4;
    /// bit 5: the channel to the centre failed (与监控中心通信信道故障).
    pub const CENTRE_LINK_FAULT: u8 = 1 << 5;
    /// bit 6: a monitored connection line failed (监测连接线路故障).
    pub const LINE_FAULT: u8 = 1 << 6;
}

/// System types (系统类型, table 4), those this gateway uses.
pub mod system_type {
    /// 0 通用.
    pub const GENERAL: u8 = 0;
    /// 1 火灾报警系统: the fire alarm system.
    pub const FIRE_ALARM: u8 = 1;
    /// 11 消火栓系统: the fire hydrant system.
    pub const HYDRANT: u8 = 11;
    /// 12 自动喷水灭火系统: the sprinkler system.
    pub const SPRINKLER: u8 = 12;
}

/// Component types (部件类型, table 5), those this gateway uses.
pub mod component_type {
    /// 0 通用.
    pub const GENERAL: u8 = 0;
    /// 1 火灾报警控制器: the fire alarm control panel.
    pub const FIRE_ALARM_PANEL: u8 = 1;
    /// 91 消防水泵: a fire pump.
    pub const FIRE_PUMP: u8 = 91;
    /// 92 消防水箱: a fire water tank.
    pub const WATER_TANK: u8 = 92;
    /// 95 喷淋泵: a sprinkler pump.
    pub const SPRINKLER_PUMP: u8 = 95;
    /// 99 压力开关: a pressure switch.
    pub const PRESSURE_SWITCH: u8 = 99;
}

/// Analog types (模拟量类型, table 6), with their unit and resolution.
pub mod analog_type {
    /// 1 事件计数, 1 event.
    pub const EVENT_COUNT: u8 = 1;
    /// 2 高度 (height, level), 0.01 m.
    pub const HEIGHT_CM: u8 = 2;
    /// 3 温度, 0.1 °C.
    pub const TEMPERATURE: u8 = 3;
    /// 4 压力, 0.1 MPa.
    pub const PRESSURE_MPA: u8 = 4;
    /// 5 压力, 0.1 kPa.
    pub const PRESSURE_KPA: u8 = 5;
    /// 6 气体浓度, 0.1 %LEL.
    pub const GAS: u8 = 6;
    /// 7 时间, 1 s.
    pub const TIME: u8 = 7;
    /// 8 电压, 0.1 V.
    pub const VOLTAGE: u8 = 8;
    /// 9 电流, 0.1 A.
    pub const CURRENT: u8 = 9;
    /// 10 流量, 0.1 L/s.
    pub const FLOW: u8 = 10;
}

/// A component description (部件说明): 31 bytes of GB 18030 text, padded
/// with NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Description(pub [u8; 31]);

impl std::fmt::Debug for Description {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Description({:?})", self.text())
    }
}

impl Description {
    /// The text in GB 18030, cut at a whole character to fit 31 bytes.
    /// Characters GB 18030 lacks cannot occur (it covers all of Unicode).
    #[must_use]
    pub fn from_text(text: &str) -> Description {
        let mut out = [0u8; 31];
        let mut at = 0;
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let (bytes, _, _) = encoding_rs::GB18030.encode(c.encode_utf8(&mut buf));
            if at + bytes.len() > out.len() {
                break;
            }
            out[at..at + bytes.len()].copy_from_slice(&bytes);
            at += bytes.len();
        }
        Description(out)
    }

    /// The text up to the first NUL (bytes that are not GB 18030 become
    /// U+FFFD).
    #[must_use]
    pub fn text(&self) -> String {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let (text, _) = encoding_rs::GB18030.decode_without_bom_handling(&self.0[..end]);
        text.into_owned()
    }
}

/// Type 1: a fire facility system's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SystemStatus {
    /// System type (table 4).
    pub system_type: u8,
    /// System address.
    pub system_address: u8,
    /// [`system_status`] bits.
    pub status: u16,
    /// When it took this state.
    pub time: TimeLabel,
}

/// Type 2: a component's running status.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ComponentStatus {
    /// System type (table 4).
    pub system_type: u8,
    /// System address.
    pub system_address: u8,
    /// Component type (table 5).
    pub component_type: u8,
    /// Component address (4 bytes, low byte first).
    pub component_address: u32,
    /// [`component_status`] bits.
    pub status: u16,
    /// What and where it is.
    pub description: Description,
    /// When it took this state.
    pub time: TimeLabel,
}

/// Type 3: a component's analog value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ComponentAnalog {
    /// System type (table 4).
    pub system_type: u8,
    /// System address.
    pub system_address: u8,
    /// Component type (table 5).
    pub component_type: u8,
    /// Component address (4 bytes, low byte first).
    pub component_address: u32,
    /// [`analog_type`] (table 6): what the value is and its resolution.
    pub analog_type: u8,
    /// The value in the type's resolution, signed, low byte first.
    pub value: i16,
    /// When it was measured.
    pub time: TimeLabel,
}

/// Type 21: the device's own running status.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceStatus {
    /// [`device_status`] bits.
    pub status: u8,
    /// When.
    pub time: TimeLabel,
}

/// An application data unit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Unit {
    /// Type 1.
    SystemStatus(Vec<SystemStatus>),
    /// Type 2.
    ComponentStatus(Vec<ComponentStatus>),
    /// Type 3.
    ComponentAnalog(Vec<ComponentAnalog>),
    /// Type 21.
    DeviceStatus(Vec<DeviceStatus>),
    /// Type 28: the device's clock.
    DeviceTime(TimeLabel),
    /// Type 81: the centre asks for the device's running status.
    ReadDeviceStatus,
    /// Type 88: the centre asks for the device's clock.
    ReadDeviceTime,
    /// Type 90: the centre sets the device's clock.
    SyncTime(TimeLabel),
    /// Any other type, as its bytes.
    Other {
        /// Its type flag.
        type_flag: u8,
        /// Its object count.
        count: u8,
        /// The objects' bytes.
        body: Vec<u8>,
    },
}

/// Why application data is not the unit its type flag says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Fewer than the two bytes of type flag and count.
    #[error("application data of {0} bytes: no type flag and object count")]
    Short(usize),
    /// The objects' bytes do not add up to the count.
    #[error("type {type_flag}: {count} objects of {size} bytes need {need} bytes, the unit has {found}")]
    Length {
        /// The type flag.
        type_flag: u8,
        /// The object count.
        count: u8,
        /// One object's size.
        size: usize,
        /// What the count needs.
        need: usize,
        /// What there is.
        found: usize,
    },
}

const SYSTEM_STATUS_LEN: usize = 1 + 1 + 2 + 6;
const COMPONENT_STATUS_LEN: usize = 1 + 1 + 1 + 4 + 2 + 31 + 6;
const COMPONENT_ANALOG_LEN: usize = 1 + 1 + 1 + 4 + 1 + 2 + 6;
const DEVICE_STATUS_LEN: usize = 1 + 6;
const TIME_LEN: usize = 6;

fn time_at(b: &[u8], at: usize) -> TimeLabel {
    TimeLabel::from_wire([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Unit {
    /// Its type flag.
    #[must_use]
    pub fn type_flag(&self) -> u8 {
        use type_flag as t;
        match self {
            Unit::SystemStatus(_) => t::SYSTEM_STATUS,
            Unit::ComponentStatus(_) => t::COMPONENT_STATUS,
            Unit::ComponentAnalog(_) => t::COMPONENT_ANALOG,
            Unit::DeviceStatus(_) => t::DEVICE_STATUS,
            Unit::DeviceTime(_) => t::DEVICE_TIME,
            Unit::ReadDeviceStatus => t::READ_DEVICE_STATUS,
            Unit::ReadDeviceTime => t::READ_DEVICE_TIME,
            Unit::SyncTime(_) => t::SYNC_TIME,
            Unit::Other { type_flag, .. } => *type_flag,
        }
    }

    /// The unit's bytes: type flag, count, objects.
    ///
    /// # Errors
    /// More than 255 objects, or more than 1024 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut body = Vec::new();
        let count = match self {
            Unit::SystemStatus(v) => {
                for o in v {
                    body.extend_from_slice(&[o.system_type, o.system_address]);
                    body.extend_from_slice(&o.status.to_le_bytes());
                    body.extend_from_slice(&o.time.to_wire());
                }
                v.len()
            }
            Unit::ComponentStatus(v) => {
                for o in v {
                    body.extend_from_slice(&[o.system_type, o.system_address, o.component_type]);
                    body.extend_from_slice(&o.component_address.to_le_bytes());
                    body.extend_from_slice(&o.status.to_le_bytes());
                    body.extend_from_slice(&o.description.0);
                    body.extend_from_slice(&o.time.to_wire());
                }
                v.len()
            }
            Unit::ComponentAnalog(v) => {
                for o in v {
                    body.extend_from_slice(&[o.system_type, o.system_address, o.component_type]);
                    body.extend_from_slice(&o.component_address.to_le_bytes());
                    body.push(o.analog_type);
                    body.extend_from_slice(&o.value.to_le_bytes());
                    body.extend_from_slice(&o.time.to_wire());
                }
                v.len()
            }
            Unit::DeviceStatus(v) => {
                for o in v {
                    body.push(o.status);
                    body.extend_from_slice(&o.time.to_wire());
                }
                v.len()
            }
            Unit::DeviceTime(t) | Unit::SyncTime(t) => {
                body.extend_from_slice(&t.to_wire());
                1
            }
            Unit::ReadDeviceStatus | Unit::ReadDeviceTime => {
                body.push(0);
                1
            }
            Unit::Other { count, body: b, .. } => {
                body.extend_from_slice(b);
                usize::from(*count)
            }
        };
        let count = u8::try_from(count).map_err(|_| EncodeError::TooManyObjects(count))?;
        if body.len() + 2 > MAX_DATA {
            return Err(EncodeError::TooLong(body.len() + 2));
        }
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(self.type_flag());
        out.push(count);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads application data. Types it does not know come back as
    /// [`Unit::Other`]; a known type whose bytes do not match its count is
    /// an error.
    ///
    /// # Errors
    /// Fewer than 2 bytes, or a known type of the wrong length.
    pub fn decode(data: &[u8]) -> Result<Unit, DataError> {
        use type_flag as t;
        let [type_flag, count, body @ ..] = data else {
            return Err(DataError::Short(data.len()));
        };
        let (type_flag, count) = (*type_flag, *count);
        let size = match type_flag {
            t::SYSTEM_STATUS => SYSTEM_STATUS_LEN,
            t::COMPONENT_STATUS => COMPONENT_STATUS_LEN,
            t::COMPONENT_ANALOG => COMPONENT_ANALOG_LEN,
            t::DEVICE_STATUS => DEVICE_STATUS_LEN,
            t::DEVICE_TIME | t::SYNC_TIME => TIME_LEN,
            t::READ_DEVICE_STATUS | t::READ_DEVICE_TIME => {
                // The reserved byte is read leniently: centres send it or not.
                return Ok(if type_flag == t::READ_DEVICE_STATUS {
                    Unit::ReadDeviceStatus
                } else {
                    Unit::ReadDeviceTime
                });
            }
            _ => {
                return Ok(Unit::Other {
                    type_flag,
                    count,
                    body: body.to_vec(),
                });
            }
        };
        let single = matches!(type_flag, t::DEVICE_TIME | t::SYNC_TIME);
        let n = if single { 1 } else { usize::from(count) };
        let need = n * size;
        if body.len() != need || (single && count != 1) {
            return Err(DataError::Length {
                type_flag,
                count,
                size,
                need,
                found: body.len(),
            });
        }
        let objects = body.chunks_exact(size);
        Ok(match type_flag {
            t::SYSTEM_STATUS => Unit::SystemStatus(
                objects
                    .map(|b| SystemStatus {
                        system_type: b[0],
                        system_address: b[1],
                        status: u16::from_le_bytes([b[2], b[3]]),
                        time: time_at(b, 4),
                    })
                    .collect(),
            ),
            t::COMPONENT_STATUS => Unit::ComponentStatus(
                objects
                    .map(|b| {
                        let mut description = [0u8; 31];
                        description.copy_from_slice(&b[9..40]);
                        ComponentStatus {
                            system_type: b[0],
                            system_address: b[1],
                            component_type: b[2],
                            component_address: u32_at(b, 3),
                            status: u16::from_le_bytes([b[7], b[8]]),
                            description: Description(description),
                            time: time_at(b, 40),
                        }
                    })
                    .collect(),
            ),
            t::COMPONENT_ANALOG => Unit::ComponentAnalog(
                objects
                    .map(|b| ComponentAnalog {
                        system_type: b[0],
                        system_address: b[1],
                        component_type: b[2],
                        component_address: u32_at(b, 3),
                        analog_type: b[7],
                        value: i16::from_le_bytes([b[8], b[9]]),
                        time: time_at(b, 10),
                    })
                    .collect(),
            ),
            t::DEVICE_STATUS => Unit::DeviceStatus(
                objects
                    .map(|b| DeviceStatus {
                        status: b[0],
                        time: time_at(b, 1),
                    })
                    .collect(),
            ),
            t::DEVICE_TIME => Unit::DeviceTime(time_at(body, 0)),
            _ => Unit::SyncTime(time_at(body, 0)),
        })
    }
}
