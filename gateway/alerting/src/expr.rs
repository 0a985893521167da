//! The condition language of rules: `occupied && !running && door_closed &&
//! !door_zone`, `abs(speed_mps) >= $overspeed_ratio * rated_speed_mps`,
//! `rate(temp_c) >= $temp_rise_c_per_s`.
//!
//! Why a language of our own: a rule must say "all of these metrics, compared
//! with these figures" in one line a property engineer can read and override,
//! and it must evaluate in tens of nanoseconds per sample. General expression
//! crates evaluate over dynamic maps of names; this one compiles names to
//! slot indices once, so evaluation is an array lookup. The grammar is
//! eight rules long:
//!
//! ```text
//! expr    := and ('||' and)*
//! and     := unary ('&&' unary)*
//! unary   := '!' unary | compare
//! compare := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
//! sum     := product (('+' | '-') product)*
//! product := atom ('*' atom)*
//! atom    := number | '$'param | metric | '-' atom | abs '(' sum ')'
//!          | rate '(' metric ')' | since_change '(' metric ')' | '(' expr ')'
//! ```
//!
//! `rate(m)` is the change of `m` per second over the rule's `window`;
//! `since_change(m)` is how many seconds `m` has kept its value (0 on the
//! sample that changed it), so "running for 45 s without a floor change" is
//! `running && since_change(running) >= 45 && since_change(floor) >= 45`.
//!
//! Values are numbers; flags are 0 and 1; anything non-zero is true. A missing
//! or stale metric is *unknown*, and unknown propagates by Kleene logic:
//! `false && unknown` is false, `true || unknown` is true, anything else with
//! an unknown is unknown. So a broken door-zone sensor makes `trapped` unknown
//! (no data), never false (which would resolve it) and never true.

use std::fmt;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// Parsed text, before names are bound to slots.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    /// A literal.
    Num(f64),
    /// `$name`: a parameter, resolved per device profile.
    Param(String),
    /// A metric by name.
    Metric(String),
    /// `rate(metric)`: change per second over the rule's window.
    Rate(String),
    /// `since_change(metric)`: seconds the metric has kept its value.
    SinceChange(String),
    /// `abs(x)`.
    Abs(Box<Ast>),
    /// `-x`.
    Neg(Box<Ast>),
    /// `a + b`, `a - b`, `a * b`.
    Arith(char, Box<Ast>, Box<Ast>),
    /// A comparison.
    Cmp(CmpOp, Box<Ast>, Box<Ast>),
    /// All of.
    And(Vec<Ast>),
    /// Any of.
    Or(Vec<Ast>),
    /// Not.
    Not(Box<Ast>),
}

/// Text that is not a condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at character {at}: {message}")]
pub struct ExprError {
    /// 1-based character position.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Param(String),
    Op(&'static str),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, m: &str| ExprError {
        at: at + 1,
        message: m.to_owned(),
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s
                .parse::<f64>()
                .map_err(|_| err(start, &format!("`{s}` is not a number")))?;
            out.push((start, Tok::Num(n)));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            if let Some(p) = s.strip_prefix('$') {
                if p.is_empty() {
                    return Err(err(start, "`$` needs a parameter name"));
                }
                out.push((start, Tok::Param(p.to_owned())));
            } else {
                out.push((start, Tok::Ident(s)));
            }
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = ["&&", "||", "<=", ">=", "==", "!="].into_iter().find(|o| *o == two);
        if let Some(op) = op {
            out.push((start, Tok::Op(op)));
            i += 2;
            continue;
        }
        let tok = match c {
            '(' => Tok::Open,
            ')' => Tok::Close,
            '!' => Tok::Op("!"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '*' => Tok::Op("*"),
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            _ => return Err(err(start, &format!("unexpected `{c}`"))),
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len + 1, |(a, _)| a + 1)
    }

    fn err<T>(&self, m: &str) -> Result<T, ExprError> {
        Err(ExprError {
            at: self.at(),
            message: m.to_owned(),
        })
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Ast, ExprError> {
        let mut items = vec![self.and()?];
        while self.eat("||") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Or(items)
        })
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut items = vec![self.unary()?];
        while self.eat("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::And(items)
        })
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.eat("!") {
            return Ok(Ast::Not(Box::new(self.unary()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Ast, ExprError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.sum()?;
        Ok(Ast::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn sum(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                '+'
            } else if self.eat("-") {
                '-'
            } else {
                return Ok(left);
            };
            left = Ast::Arith(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.atom()?;
        while self.eat("*") {
            left = Ast::Arith('*', Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Ast, ExprError> {
        let Some(tok) = self.peek().cloned() else {
            return self.err("the condition ends too early");
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Ast::Num(n)),
            Tok::Param(p) => Ok(Ast::Param(p)),
            Tok::Op("-") => Ok(Ast::Neg(Box::new(self.atom()?))),
            Tok::Open => {
                let inner = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::Ident(name) if name == "abs" || name == "rate" || name == "since_change" => {
                if self.peek() != Some(&Tok::Open) {
                    return self.err(&format!("expected `(` after `{name}`"));
                }
                self.pos += 1;
                let arg = if name == "abs" {
                    Ast::Abs(Box::new(self.sum()?))
                } else {
                    match self.peek().cloned() {
                        Some(Tok::Ident(m)) => {
                            self.pos += 1;
                            if name == "rate" {
                                Ast::Rate(m)
                            } else {
                                Ast::SinceChange(m)
                            }
                        }
                        _ => return self.err(&format!("`{name}` takes one metric name")),
                    }
                };
                if self.peek() != Some(&Tok::Close) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(arg)
            }
            Tok::Ident(name) => Ok(Ast::Metric(name)),
            Tok::Op(o) => {
                self.pos -= 1;
                self.err(&format!("unexpected `{o}`"))
            }
            Tok::Close => {
                self.pos -= 1;
                self.err("unexpected `)`")
            }
        }
    }
}

/// Parses a condition.
///
/// # Errors
/// An [`ExprError`] with the character position.
pub fn parse(text: &str) -> Result<Ast, ExprError> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err(ExprError {
            at: 1,
            message: "the condition is empty".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: text.chars().count(),
    };
    let ast = p.expr()?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the condition");
    }
    Ok(ast)
}

/// Where a metric's value lives: the device's slots or a port's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A device-level metric.
    Device(u16),
    /// A per-port metric (the instance's port).
    Port(u16),
}

/// A condition bound to slots and with parameters resolved: what the engine
/// evaluates.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A constant.
    Const(f64),
    /// A metric's current value.
    Value(Slot),
    /// The rule's rate term.
    Rate,
    /// Seconds since the metric in the slot last changed.
    SinceChange(Slot),
    /// `abs`.
    Abs(Box<Node>),
    /// Negation.
    Neg(Box<Node>),
    /// Arithmetic.
    Arith(char, Box<Node>, Box<Node>),
    /// Comparison.
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// All of.
    And(Vec<Node>),
    /// Any of.
    Or(Vec<Node>),
    /// Not.
    Not(Box<Node>),
}

/// What evaluation reads: current values by slot (`None` when missing or
/// stale) and the rule's rate.
pub trait Values {
    /// The value in a slot.
    fn get(&self, slot: Slot) -> Option<f64>;
    /// The rule's rate of change, per second.
    fn rate(&self) -> Option<f64>;
    /// Seconds the value in a slot has been unchanged.
    fn since_change(&self, slot: Slot) -> Option<f64>;
}

impl Node {
    /// Evaluates to a number; `None` is unknown. Truth is "non-zero".
    pub fn eval(&self, v: &impl Values) -> Option<f64> {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            Node::Const(c) => Some(*c),
            Node::Value(s) => v.get(*s),
            Node::Rate => v.rate(),
            Node::SinceChange(s) => v.since_change(*s),
            Node::Abs(x) => x.eval(v).map(f64::abs),
            Node::Neg(x) => x.eval(v).map(|x| -x),
            Node::Arith(op, a, c) => {
                let (a, c) = (a.eval(v)?, c.eval(v)?);
                Some(match op {
                    '+' => a + c,
                    '-' => a - c,
                    _ => a * c,
                })
            }
            Node::Cmp(op, a, c) => Some(b(op.holds(a.eval(v)?, c.eval(v)?))),
            Node::And(items) => {
                let mut unknown = false;
                for i in items {
                    match i.eval(v) {
                        Some(0.0) => return Some(0.0),
                        Some(_) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(1.0)
            }
            Node::Or(items) => {
                let mut unknown = false;
                for i in items {
                    match i.eval(v) {
                        Some(x) if x != 0.0 && !x.is_nan() => return Some(1.0),
                        Some(_) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(0.0)
            }
            Node::Not(x) => x.eval(v).map(|x| b(x == 0.0)),
        }
    }

    /// Evaluates as a condition: `Some(true)`, `Some(false)` or unknown.
    pub fn holds(&self, v: &impl Values) -> Option<bool> {
        self.eval(v).map(|x| x != 0.0 && !x.is_nan())
    }
}

impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ast::Num(n) => write!(f, "{n}"),
            Ast::Param(p) => write!(f, "${p}"),
            Ast::Metric(m) => f.write_str(m),
            Ast::Rate(m) => write!(f, "rate({m})"),
            Ast::SinceChange(m) => write!(f, "since_change({m})"),
            Ast::Abs(x) => write!(f, "abs({x})"),
            Ast::Neg(x) => write!(f, "-{x}"),
            Ast::Arith(op, a, b) => write!(f, "({a} {op} {b})"),
            Ast::Cmp(op, a, b) => {
                let o = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                };
                write!(f, "{a} {o} {b}")
            }
            Ast::And(items) | Ast::Or(items) => {
                let sep = if matches!(self, Ast::And(_)) { " && " } else { " || " };
                f.write_str("(")?;
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
            Ast::Not(x) => write!(f, "!{x}"),
        }
    }
}
