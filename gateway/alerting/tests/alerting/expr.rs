//! The condition language: grammar, errors with positions, three-valued logic.

use alerting::expr::{Node, Slot, Values, parse};

struct V(Vec<Option<f64>>);

impl Values for V {
    fn get(&self, slot: Slot) -> Option<f64> {
        match slot {
            Slot::Device(i) | Slot::Port(i) => self.0.get(usize::from(i)).copied().flatten(),
        }
    }
    fn rate(&self) -> Option<f64> {
        None
    }
    fn since_change(&self, _: Slot) -> Option<f64> {
        None
    }
}

fn node(text: &str) -> Node {
    let ast = parse(text).unwrap();
    let mut slots = alerting::rule::Slots::default();
    let params = std::collections::BTreeMap::from([("k".to_owned(), alerting::rule::Figure::Number(1.2))]);
    let r = alerting::rule::Resolver::new(&params, "t");
    r.bind("when", &ast, &mut slots, alerting::Scope::Device, &mut None)
        .unwrap()
}

#[test]
fn unknown_propagates_by_kleene_logic() {
    // Slots are numbered in order of first use: a=0, b=1.
    let and = node("a && b");
    let or = node("a || b");
    let cases = [
        (Some(0.0), None, Some(false), None),
        (Some(1.0), None, None, Some(true)),
        (None, None, None, None),
        (Some(1.0), Some(1.0), Some(true), Some(true)),
    ];
    for (a, b, want_and, want_or) in cases {
        let v = V(vec![a, b]);
        assert_eq!(and.holds(&v), want_and, "{a:?} && {b:?}");
        assert_eq!(or.holds(&v), want_or, "{a:?} || {b:?}");
    }
    assert_eq!(node("!a").holds(&V(vec![None])), None);
}

#[test]
fn arithmetic_comparisons_and_parameters() {
    let overspeed = node("abs(speed) >= $k * rated");
    assert_eq!(overspeed.holds(&V(vec![Some(-2.2), Some(1.75)])), Some(true));
    assert_eq!(overspeed.holds(&V(vec![Some(2.0), Some(1.75)])), Some(false));
    assert_eq!(overspeed.holds(&V(vec![Some(2.0), None])), None);
    let t = node("floor > 1 + floors - 1");
    assert_eq!(t.holds(&V(vec![Some(11.0), Some(10.0)])), Some(true));
    assert_eq!(t.holds(&V(vec![Some(10.0), Some(10.0)])), Some(false));
    let p = node("(state == 1 || state == 2) && power < 30");
    assert_eq!(p.holds(&V(vec![Some(2.0), Some(10.0)])), Some(true));
    assert_eq!(p.holds(&V(vec![Some(4.0), Some(10.0)])), Some(false));
}

#[test]
fn errors_say_where() {
    let e = |t: &str| parse(t).unwrap_err().to_string();
    assert_eq!(e(""), "at character 1: the condition is empty");
    assert_eq!(e("a &&"), "at character 5: the condition ends too early");
    assert_eq!(e("a && (b"), "at character 8: expected `)`");
    assert_eq!(e("a # b"), "at character 3: unexpected `#`");
    assert_eq!(e("rate(1)"), "at character 6: `rate` takes one metric name");
    assert_eq!(e("a b"), "at character 3: unexpected text after the condition");
    assert_eq!(e("$ > 1"), "at character 1: `$` needs a parameter name");
}
