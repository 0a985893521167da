//! The register maps are consistent: every canonical point once, no overlaps,
//! values survive the register encoding in every word order.

use std::collections::BTreeMap;

use proptest::prelude::*;
use protocol::modbus::{DataType, MAP_VERSION, MAX_MAP_PORTS, Point, Table, WordOrder, map_for};
use protocol::{DeviceClass, EventCode, Metric, Op, PortMetric};

#[test]
fn every_canonical_metric_has_exactly_one_register() {
    for class in DeviceClass::ALL {
        let map = map_for(*class);
        assert_eq!(map.class, *class);
        let points: Vec<Point> = map.entries(1).map(|e| e.register.point).collect();
        for m in Metric::of_class(*class) {
            let n = points.iter().filter(|p| **p == Point::Metric(m)).count();
            assert_eq!(n, 1, "{class}: metric {m} appears {n} times");
        }
        for p in &points {
            if let Point::Metric(m) = p {
                assert_eq!(m.class(), Some(*class), "{m} in the {class} map");
            }
            if let Point::Event(c) = p {
                assert_eq!(c.class(), Some(*class), "{c} in the {class} map");
            }
        }
        let events = points.iter().filter(|p| matches!(p, Point::Event(_))).count();
        let class_codes = EventCode::of_class(*class)
            .filter(|c| c.class().is_some() && c.is_state())
            .count();
        assert_eq!(events, class_codes, "{class}: every node-visible code has a bit");
    }
    let charger: Vec<_> = map_for(DeviceClass::Charger).entries(12).collect();
    for m in PortMetric::ALL {
        let ports: Vec<u8> = charger
            .iter()
            .filter(|e| e.register.point == Point::PortMetric(*m))
            .filter_map(|e| e.port)
            .collect();
        assert_eq!(ports, (1..=12).collect::<Vec<_>>(), "port metric {m}");
    }
}

#[test]
fn no_two_points_overlap_even_with_the_most_ports() {
    for class in DeviceClass::ALL {
        let mut used: BTreeMap<(Table, u16), String> = BTreeMap::new();
        for e in map_for(*class).entries(MAX_MAP_PORTS) {
            for w in 0..e.register.data_type.words() {
                let key = (e.register.table, e.register.address + w);
                let what = format!("{} port {:?}", e.register.point, e.port);
                if let Some(prev) = used.insert(key, what.clone()) {
                    panic!("{class}: {key:?} is both {prev} and {what}");
                }
            }
            assert!(
                !e.register.table.is_bit() || e.register.data_type == DataType::Bool,
                "bits are bools"
            );
        }
    }
}

#[test]
fn lookups_by_address_find_the_point() {
    let charger = map_for(DeviceClass::Charger);
    let e = charger.find(Table::InputRegister, 100 + 10 * 3 + 3, 12).unwrap();
    assert_eq!(
        (e.register.point, e.port),
        (Point::PortMetric(PortMetric::TempC), Some(4))
    );
    // The second word of a 32-bit value belongs to it too.
    let e = charger.find(Table::InputRegister, 105, 12).unwrap();
    assert_eq!(e.register.point, Point::PortMetric(PortMetric::EnergyWh));
    let e = charger.find(Table::Coil, 103, 12).unwrap();
    assert_eq!((e.register.point, e.port), (Point::Command(Op::CutOff), Some(4)));
    assert!(e.register.writable());
    // Beyond the node's ports there is nothing.
    assert_eq!(charger.find(Table::Coil, 112, 12), None);
    let v = map_for(DeviceClass::Elevator).find(Table::InputRegister, 0, 0).unwrap();
    assert_eq!(v.register.read(&[MAP_VERSION]).unwrap(), 1.0);
}

#[test]
fn scaled_values_read_back() {
    let firepump = map_for(DeviceClass::Firepump);
    let p = firepump
        .entries(0)
        .find(|e| e.register.point == Point::Metric(Metric::NetworkPressureMpa))
        .unwrap();
    let words = p.register.write(0.35).unwrap();
    assert_eq!(words.as_slice(), &[350]);
    assert!((p.register.read(&words).unwrap() - 0.35).abs() < 1e-12);
    assert!(p.register.write(-0.1).is_err(), "negative pressure does not fit a u16");
    assert!(p.register.read(&[1, 2]).is_err(), "wrong register count");
}

#[test]
fn word_orders_match_their_names() {
    let v: u32 = 0xA1B2_C3D4;
    let b = v.to_be_bytes();
    assert_eq!(WordOrder::Abcd.from_be_bytes(b), [0xA1B2, 0xC3D4]);
    assert_eq!(WordOrder::Cdab.from_be_bytes(b), [0xC3D4, 0xA1B2]);
    assert_eq!(WordOrder::Badc.from_be_bytes(b), [0xB2A1, 0xD4C3]);
    assert_eq!(WordOrder::Dcba.from_be_bytes(b), [0xD4C3, 0xB2A1]);
}

fn order() -> impl Strategy<Value = WordOrder> {
    prop::sample::select(vec![WordOrder::Abcd, WordOrder::Cdab, WordOrder::Badc, WordOrder::Dcba])
}

proptest! {
    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn thirty_two_bit_values_round_trip(o in order(), u in any::<u32>(), i in any::<i32>(), f in any::<f32>()) {
        let w = DataType::U32(o).encode(f64::from(u)).unwrap();
        prop_assert_eq!(DataType::U32(o).decode(&w).unwrap(), f64::from(u));
        let w = DataType::I32(o).encode(f64::from(i)).unwrap();
        prop_assert_eq!(DataType::I32(o).decode(&w).unwrap(), f64::from(i));
        if f.is_finite() {
            let w = DataType::F32(o).encode(f64::from(f)).unwrap();
            prop_assert_eq!(DataType::F32(o).decode(&w).unwrap(), f64::from(f));
        }
        let words = [(u & 0xffff) as u16, (u >> 16) as u16];
        prop_assert_eq!(o.from_be_bytes(o.to_be_bytes(words)), words);
    }

    #[test]
    fn sixteen_bit_values_round_trip(u in any::<u16>(), i in any::<i16>()) {
        let w = DataType::U16.encode(f64::from(u)).unwrap();
        prop_assert_eq!(DataType::U16.decode(&w).unwrap(), f64::from(u));
        let w = DataType::I16.encode(f64::from(i)).unwrap();
        prop_assert_eq!(DataType::I16.decode(&w).unwrap(), f64::from(i));
    }

    #[test]
    fn arbitrary_register_contents_never_panic(words in prop::collection::vec(any::<u16>(), 0..4)) {
        for class in DeviceClass::ALL {
            for e in map_for(*class).entries(4) {
                let _ = e.register.read(&words);
            }
        }
    }
}
