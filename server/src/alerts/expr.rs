//! Rule expressions: `avg(1m) > 4`, `last > 8 and key("web1.up") == 1`.
//!
//! A small typed language over one key's stored history. Numbers combine with `+ - * / %`;
//! comparisons make conditions, which combine with `and`, `or`, `not`. A term that has no
//! data (an empty window, a text value, a missing key) is *unknown*: it makes its
//! comparison unknown, which never fires, so a key holding `down` is never an error storm.
//!
//! Terms: a number; `last` (the newest value); `avg`, `min`, `max`, `sum`, `count`,
//! `delta`, `rate`, `stddev`, each over a duration back from now (`avg(5m)`), the newest
//! N samples (`avg(10)`) or, bare, everything stored; `key("other.key")`, another key's
//! newest value. And one condition: `breaches("warning")`, true when the newest value is
//! outside the range held by the sibling key `<key>.warning` — the thresholds munin and
//! Nagios plugins publish (`10:50`, `~:5`, `@10:20`, `8` for at most 8).

use std::fmt;

/// One sample as the evaluator sees it; `value` is None for text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: u64,
    pub value: Option<f64>,
}

/// What an expression is evaluated against.
pub struct Scope<'a> {
    /// Unix seconds.
    pub now: u64,
    /// The key's samples, newest first.
    pub points: &'a [Point],
    /// Another key's newest value.
    pub lookup: &'a dyn Fn(&str) -> Option<f64>,
    /// The key being evaluated.
    pub key: &'a str,
    /// Another key's newest value as text (for `breaches`).
    pub text: &'a dyn Fn(&str) -> Option<String>,
    /// What the rule's `keys` wildcards matched in `key`: `$1`… in `key("…")`.
    pub captures: &'a [String],
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    root: Node,
    text: String,
}

/// Why an expression does not compile; `at` is the byte offset in its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at column {})", at + 1)]
pub struct ExprError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Window {
    Seconds(u64),
    Samples(usize),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Delta,
    Rate,
    Stddev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Number(f64),
    Last,
    Func(Func, Window),
    Key(String),
    Neg(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    /// The newest value is outside the range in the key `<key>.<suffix>`.
    Breaches(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Number,
    Condition,
}

impl Condition {
    /// Compiles `text`, which must be a condition (a comparison, or several joined).
    pub fn parse(text: &str) -> Result<Condition, ExprError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            end: text.len(),
        };
        let root = parser.or()?;
        if let Some(t) = parser.peek() {
            return Err(parser.error_at(t.at, format!("unexpected {}", t.kind)));
        }
        if type_of(&root) != Type::Condition {
            return Err(ExprError {
                at: 0,
                message: "this is a number, not a condition: compare it, as in `last > 8`".into(),
            });
        }
        Ok(Condition {
            root,
            text: text.to_string(),
        })
    }

    /// True, false, or None when a term it needs has no data.
    pub fn eval(&self, scope: &Scope<'_>) -> Option<bool> {
        truth(&self.root, scope)
    }

    /// The number the condition is about: the left side of its first comparison (for
    /// `{value}` in a summary and the value shown beside an alert).
    pub fn subject(&self, scope: &Scope<'_>) -> Option<f64> {
        first_comparison(&self.root).and_then(|lhs| number(lhs, scope))
    }

    /// The threshold it compares against when that is a plain number (`avg(1m) > 4` → 4),
    /// for drawing on a plot.
    pub fn threshold(&self) -> Option<f64> {
        match &self.root {
            Node::Cmp(_, _, rhs) => match **rhs {
                Node::Number(n) => Some(n),
                _ => None,
            },
            _ => None,
        }
    }

    /// The longest duration it looks back over, in seconds (0 when it looks at samples
    /// only by count): its value can change with time alone for that long.
    pub fn lookback(&self) -> u64 {
        fn walk(node: &Node) -> u64 {
            match node {
                Node::Func(_, Window::Seconds(s)) => *s,
                Node::Neg(a) | Node::Not(a) => walk(a),
                Node::Arith(_, a, b) | Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                    walk(a).max(walk(b))
                }
                _ => 0,
            }
        }
        walk(&self.root)
    }

    /// Every window of time it looks back over, in seconds.
    pub fn windows(&self) -> Vec<u64> {
        fn walk(node: &Node, out: &mut Vec<u64>) {
            match node {
                Node::Func(_, Window::Seconds(s)) => out.push(*s),
                Node::Neg(a) | Node::Not(a) => walk(a, out),
                Node::Arith(_, a, b) | Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The next moment after `now` at which a sample of `points` (newest first) leaves
    /// one of its windows: the only moments time alone can change what it computes.
    pub fn next_window_change(&self, points: &[Point], now: u64) -> Option<u64> {
        self.windows()
            .into_iter()
            .filter_map(|s| {
                // A window of s seconds holds the samples of `now - s` and after.
                let from = now.saturating_sub(s);
                let inside = points.partition_point(|p| p.time >= from);
                let oldest = points[..inside].last()?;
                Some(oldest.time + s + 1)
            })
            .filter(|&at| at > now)
            .min()
    }

    /// A band of values such that, while every sample of the key lies in it, the condition
    /// is surely not true: found for comparisons of `last`, `avg`, `min` or `max` (over any
    /// window) with a number, joined by `and`/`or`, as these never leave the range of the
    /// samples they look at. It must hold the key's stored samples, `[lo, hi]`. None when
    /// no such band is known: then every set is evaluated.
    pub fn quiet_band(&self, lo: f64, hi: f64) -> Option<(f64, f64)> {
        fn band(node: &Node, lo: f64, hi: f64) -> Option<(f64, f64)> {
            let holds = |b: (f64, f64)| (b.0 <= lo && hi <= b.1).then_some(b);
            match node {
                Node::Cmp(op, a, b) => {
                    let (op, threshold) = match (&**a, &**b) {
                        (x, Node::Number(t)) if bounded(x) => (*op, *t),
                        (Node::Number(t), x) if bounded(x) => (op.flipped(), *t),
                        _ => return None,
                    };
                    holds(match op {
                        Cmp::Gt => (f64::NEG_INFINITY, threshold),
                        Cmp::Ge => (f64::NEG_INFINITY, next_down(threshold)),
                        Cmp::Lt => (threshold, f64::INFINITY),
                        Cmp::Le => (next_up(threshold), f64::INFINITY),
                        Cmp::Eq | Cmp::Ne => return None,
                    })
                }
                // False when either side is: either side's band will do.
                Node::And(a, b) => {
                    let (a, b) = (band(a, lo, hi), band(b, lo, hi));
                    match (a, b) {
                        (Some(a), Some(b)) if b.1 - b.0 > a.1 - a.0 => Some(b),
                        (Some(a), _) => Some(a),
                        (None, b) => b,
                    }
                }
                // False only when both sides are.
                Node::Or(a, b) => {
                    let (a, b) = (band(a, lo, hi)?, band(b, lo, hi)?);
                    Some((a.0.max(b.0), a.1.min(b.1)))
                }
                _ => None,
            }
        }
        fn bounded(node: &Node) -> bool {
            matches!(
                node,
                Node::Last | Node::Func(Func::Avg | Func::Min | Func::Max, _)
            )
        }
        band(&self.root, lo, hi)
    }

    /// Whether the condition surely stays not true (false or unknown) while the key takes
    /// up to `outlook.sets` more samples within `outlook.band`, before any sample leaves one
    /// of its windows by time (the caller stops trusting it at `next_window_change`). For
    /// the conditions `quiet_band` cannot bound — `rate`, `delta`, `sum`, `count`, `stddev`,
    /// arithmetic — by what those samples can make of each term: the samples pushed out of
    /// a window by newer ones are the oldest, at most one per new sample.
    pub fn cannot_fire(&self, outlook: &Outlook<'_>) -> bool {
        outcomes(&self.root, outlook) & TRUE == 0
    }

    /// Whether it reads another key, whose changes do not trigger an evaluation.
    pub fn reads_other_keys(&self) -> bool {
        fn walk(node: &Node) -> bool {
            match node {
                Node::Key(_) | Node::Breaches(_) => true,
                Node::Neg(a) | Node::Not(a) => walk(a),
                Node::Arith(_, a, b) | Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                    walk(a) || walk(b)
                }
                _ => false,
            }
        }
        walk(&self.root)
    }
}

/// What the next sets of a key may bring, as `Condition::cannot_fire` takes it.
#[derive(Debug, Clone, Copy)]
pub struct Outlook<'a> {
    /// The key's samples now, newest first, every one a number.
    pub points: &'a [Point],
    /// Unix seconds of the proof.
    pub now: u64,
    /// The values the next samples bring.
    pub band: (f64, f64),
    /// How many samples (at least one).
    pub sets: usize,
}

// What a condition may come to, as a set of three-valued outcomes.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const UNKNOWN: u8 = 4;
const ANY: u8 = TRUE | FALSE | UNKNOWN;

fn outcomes(node: &Node, o: &Outlook<'_>) -> u8 {
    let kleene = |a: u8, b: u8, and: bool| {
        let mut out = 0;
        for x in [TRUE, FALSE, UNKNOWN].into_iter().filter(|x| a & x != 0) {
            for y in [TRUE, FALSE, UNKNOWN].into_iter().filter(|y| b & y != 0) {
                let (win, lose) = if and { (FALSE, TRUE) } else { (TRUE, FALSE) };
                out |= if x == win || y == win {
                    win
                } else if x == lose && y == lose {
                    lose
                } else {
                    UNKNOWN
                };
            }
        }
        out
    };
    match node {
        Node::Cmp(op, a, b) => {
            let (Some(x), Some(y)) = (span(a, o), span(b, o)) else {
                return ANY;
            };
            let overlap = x.lo <= y.hi && y.lo <= x.hi;
            let one_point = x.lo == x.hi && y.lo == y.hi && x.lo == y.lo;
            let (can_be_true, can_be_false) = match op {
                Cmp::Gt => (x.hi > y.lo, x.lo <= y.hi),
                Cmp::Ge => (x.hi >= y.lo, x.lo < y.hi),
                Cmp::Lt => (x.lo < y.hi, x.hi >= y.lo),
                Cmp::Le => (x.lo <= y.hi, x.hi > y.lo),
                Cmp::Eq => (overlap, !one_point),
                Cmp::Ne => (!one_point, overlap),
            };
            let mut out = 0;
            if x.unknown || y.unknown {
                out |= UNKNOWN;
            }
            if can_be_true {
                out |= TRUE;
            }
            if can_be_false {
                out |= FALSE;
            }
            out
        }
        Node::And(a, b) => kleene(outcomes(a, o), outcomes(b, o), true),
        Node::Or(a, b) => kleene(outcomes(a, o), outcomes(b, o), false),
        Node::Not(a) => {
            let x = outcomes(a, o);
            let mut out = x & UNKNOWN;
            if x & TRUE != 0 {
                out |= FALSE;
            }
            if x & FALSE != 0 {
                out |= TRUE;
            }
            out
        }
        _ => ANY,
    }
}

/// The values a number may take: within `[lo, hi]`, or unknown if `unknown`.
#[derive(Debug, Clone, Copy)]
struct Span {
    lo: f64,
    hi: f64,
    unknown: bool,
}

/// What a number of the expression may come to under `o`; None when it cannot be said.
fn span(node: &Node, o: &Outlook<'_>) -> Option<Span> {
    let known = |lo, hi| Span {
        lo,
        hi,
        unknown: false,
    };
    let s = match node {
        Node::Number(n) => known(*n, *n),
        // The newest sample is one of the new ones.
        Node::Last => known(o.band.0, o.band.1),
        Node::Func(func, window) => func_span(*func, *window, o)?,
        Node::Neg(a) => {
            let a = span(a, o)?;
            Span {
                lo: -a.hi,
                hi: -a.lo,
                ..a
            }
        }
        Node::Arith(op, a, b) => {
            let (a, b) = (span(a, o)?, span(b, o)?);
            let corners = |f: fn(f64, f64) -> f64| {
                let c = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
                (
                    c.into_iter().fold(f64::INFINITY, f64::min),
                    c.into_iter().fold(f64::NEG_INFINITY, f64::max),
                )
            };
            let (lo, hi) = match op {
                Arith::Add => (a.lo + b.lo, a.hi + b.hi),
                Arith::Sub => (a.lo - b.hi, a.hi - b.lo),
                Arith::Mul => corners(|x, y| x * y),
                // A divisor that may be 0 makes the quotient anything.
                Arith::Div if b.lo <= 0.0 && b.hi >= 0.0 => return None,
                Arith::Div => corners(|x, y| x / y),
                Arith::Rem => return None,
            };
            Span {
                lo,
                hi,
                unknown: a.unknown || b.unknown,
            }
        }
        _ => return None,
    };
    if s.lo.is_nan() || s.hi.is_nan() {
        return None;
    }
    // A result beyond the floats is unknown to the evaluator.
    let unknown = s.unknown || !s.lo.is_finite() || !s.hi.is_finite();
    Some(Span { unknown, ..s })
}

fn func_span(func: Func, window: Window, o: &Outlook<'_>) -> Option<Span> {
    let taken = match window {
        Window::Samples(n) => n,
        Window::All => o.points.len(),
        Window::Seconds(s) => {
            let from = o.now.saturating_sub(s);
            o.points.partition_point(|p| p.time >= from)
        }
    };
    let old: Vec<f64> = o.points[..taken.min(o.points.len())]
        .iter()
        .map(|p| p.value)
        .collect::<Option<_>>()?;
    let (a, b) = o.band;
    let (n, k) = (old.len(), o.sets.max(1));
    // Old samples surely still in the window: each new one pushes out at most one.
    let kept = n.saturating_sub(k);
    let (lo, hi) = old
        .iter()
        .fold((a, b), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let known = |lo, hi| Span {
        lo,
        hi,
        unknown: false,
    };
    Some(match func {
        Func::Avg | Func::Min | Func::Max => known(lo, hi),
        // Popoviciu: a spread of values within [lo, hi] has a deviation of at most half its
        // width (widened a hair for the evaluator's rounding).
        Func::Stddev => known(0.0, (hi - lo) / 2.0 * (1.0 + 1e-9) + f64::EPSILON),
        Func::Count => {
            let cap = match window {
                Window::Samples(n) => n as f64,
                _ => f64::INFINITY,
            };
            known(((kept + 1) as f64).min(cap), ((n + k) as f64).min(cap))
        }
        Func::Sum => {
            // The newest m old samples stay, m in kept..=n; 1..=k new ones come.
            let mut prefix = old.iter().take(kept).sum::<f64>();
            let (mut pl, mut ph) = (prefix, prefix);
            for v in &old[kept..] {
                prefix += v;
                (pl, ph) = (pl.min(prefix), ph.max(prefix));
            }
            let kf = k as f64;
            known(pl + a.min(kf * a), ph + b.max(kf * b))
        }
        Func::Delta => {
            // Newest minus oldest: the newest is new; the oldest is an old sample that may
            // still be there, or a new one (and one sample alone gives no delta).
            let (mut ol, mut oh) = (f64::INFINITY, f64::NEG_INFINITY);
            for v in &old[kept.max(1) - 1..] {
                (ol, oh) = (ol.min(*v), oh.max(*v));
            }
            if kept == 0 {
                (ol, oh) = (ol.min(a), oh.max(b));
            }
            Span {
                lo: a - oh,
                hi: b - ol,
                unknown: kept == 0,
            }
        }
        Func::Rate => {
            // Increases are summed, a drop counted from 0: with no negative sample, a new
            // one adds at most its own value. The time between the oldest and the newest is
            // a whole second at least (none gives no rate).
            if lo < 0.0 {
                return None;
            }
            let increase: f64 = old
                .windows(2)
                .map(|w| if w[0] >= w[1] { w[0] - w[1] } else { w[0] })
                .sum();
            Span {
                lo: 0.0,
                hi: increase + k as f64 * b,
                unknown: true,
            }
        }
    })
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cmp {
    /// `4 < x` is `x > 4`.
    fn flipped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            other => other,
        }
    }
}

/// The largest float below `x` (for finite `x`).
fn next_down(x: f64) -> f64 {
    if x == 0.0 {
        -f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() - 1)
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}

/// The smallest float above `x` (for finite `x`).
fn next_up(x: f64) -> f64 {
    -next_down(-x)
}

fn first_comparison(node: &Node) -> Option<&Node> {
    match node {
        Node::Cmp(_, lhs, _) => Some(lhs),
        Node::And(a, b) | Node::Or(a, b) => first_comparison(a).or_else(|| first_comparison(b)),
        Node::Not(a) => first_comparison(a),
        _ => None,
    }
}

fn type_of(node: &Node) -> Type {
    match node {
        Node::Cmp(..) | Node::And(..) | Node::Or(..) | Node::Not(..) | Node::Breaches(_) => {
            Type::Condition
        }
        _ => Type::Number,
    }
}

fn truth(node: &Node, scope: &Scope<'_>) -> Option<bool> {
    match node {
        Node::Cmp(op, a, b) => {
            let (a, b) = (number(a, scope)?, number(b, scope)?);
            Some(match op {
                Cmp::Lt => a < b,
                Cmp::Le => a <= b,
                Cmp::Gt => a > b,
                Cmp::Ge => a >= b,
                Cmp::Eq => a == b,
                Cmp::Ne => a != b,
            })
        }
        // Kleene logic: `false and unknown` is false, `true or unknown` is true.
        Node::And(a, b) => match (truth(a, scope), truth(b, scope)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Node::Or(a, b) => match (truth(a, scope), truth(b, scope)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Node::Not(a) => truth(a, scope).map(|t| !t),
        Node::Breaches(suffix) => {
            let range = (scope.text)(&format!("{}.{suffix}", scope.key))?;
            let value = scope.points.first()?.value?;
            Some(!within(&range, value)?)
        }
        _ => None,
    }
}

/// Whether `value` is within a munin / Nagios range: `start:end` (either side may be empty,
/// `~` is minus infinity), `@start:end` (alert inside instead), or `end` alone (at most it).
/// None when the text is no range.
fn within(range: &str, value: f64) -> Option<bool> {
    let range = range.trim();
    let (inverted, range) = match range.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, range),
    };
    let bound = |t: &str, empty: f64| -> Option<f64> {
        match t.trim() {
            "" => Some(empty),
            "~" => Some(f64::NEG_INFINITY),
            t => t.parse().ok(),
        }
    };
    let (lo, hi) = match range.split_once(':') {
        Some((lo, hi)) => (bound(lo, f64::NEG_INFINITY)?, bound(hi, f64::INFINITY)?),
        None => (f64::NEG_INFINITY, bound(range, f64::INFINITY)?),
    };
    let inside = lo <= value && value <= hi;
    Some(inside != inverted)
}

fn number(node: &Node, scope: &Scope<'_>) -> Option<f64> {
    let n = match node {
        Node::Number(n) => *n,
        Node::Last => scope.points.first()?.value?,
        Node::Key(key) => (scope.lookup)(&super::glob::expand(key, scope.captures))?,
        Node::Func(func, window) => aggregate(*func, *window, scope)?,
        Node::Neg(a) => -number(a, scope)?,
        Node::Arith(op, a, b) => {
            let (a, b) = (number(a, scope)?, number(b, scope)?);
            match op {
                Arith::Add => a + b,
                Arith::Sub => a - b,
                Arith::Mul => a * b,
                Arith::Div if b == 0.0 => return None,
                Arith::Div => a / b,
                Arith::Rem if b == 0.0 => return None,
                Arith::Rem => a % b,
            }
        }
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// The numeric samples of the window, newest first.
fn window<'a>(window: Window, scope: &'a Scope<'_>) -> impl Iterator<Item = (u64, f64)> + 'a {
    let taken = match window {
        Window::Samples(n) => n,
        Window::All => scope.points.len(),
        Window::Seconds(s) => {
            let from = scope.now.saturating_sub(s);
            scope.points.partition_point(|p| p.time >= from)
        }
    };
    scope.points[..taken.min(scope.points.len())]
        .iter()
        .filter_map(|p| Some((p.time, p.value?)))
}

fn aggregate(func: Func, w: Window, scope: &Scope<'_>) -> Option<f64> {
    let values = window(w, scope);
    match func {
        Func::Count => Some(values.count() as f64),
        Func::Avg | Func::Sum | Func::Stddev => {
            let (mut n, mut sum, mut squares) = (0usize, 0.0, 0.0);
            for (_, v) in values {
                n += 1;
                sum += v;
                squares += v * v;
            }
            if n == 0 {
                return None;
            }
            let mean = sum / n as f64;
            Some(match func {
                Func::Sum => sum,
                Func::Avg => mean,
                _ => (squares / n as f64 - mean * mean).max(0.0).sqrt(),
            })
        }
        Func::Min => values.map(|(_, v)| v).reduce(f64::min),
        Func::Max => values.map(|(_, v)| v).reduce(f64::max),
        Func::Delta => {
            let mut values = values;
            let (_, newest) = values.next()?;
            let (_, oldest) = values.last()?;
            Some(newest - oldest)
        }
        Func::Rate => {
            // Oldest first, summing increases; a drop is a counter reset, counted from 0.
            let points: Vec<(u64, f64)> = values.collect();
            let (&(newest_time, _), &(oldest_time, _)) = (points.first()?, points.last()?);
            if newest_time <= oldest_time {
                return None;
            }
            let increase: f64 = points
                .windows(2)
                .map(|w| {
                    let (newer, older) = (w[0].1, w[1].1);
                    if newer >= older {
                        newer - older
                    } else {
                        newer
                    }
                })
                .sum();
            Some(increase / (newest_time - oldest_time) as f64)
        }
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Number(f64),
    Duration(u64),
    Word(String),
    Text(String),
    Sym(&'static str),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Number(n) => write!(f, "number {n}"),
            Kind::Duration(s) => write!(f, "duration {s}s"),
            Kind::Word(w) => write!(f, "`{w}`"),
            Kind::Text(t) => write!(f, "string {t:?}"),
            Kind::Sym(s) => write!(f, "`{s}`"),
        }
    }
}

struct Token {
    kind: Kind,
    at: usize,
}

const SYMBOLS: &[&str] = &[
    "<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "%", "(", ")",
];

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let digits = &text[at..i];
            let unit = match bytes.get(i) {
                Some(b's') => Some(1),
                Some(b'm') => Some(60),
                Some(b'h') => Some(3600),
                Some(b'd') => Some(86_400),
                Some(b'w') => Some(604_800),
                _ => None,
            };
            let unit_ends = bytes.get(i + 1).is_none_or(|b| !b.is_ascii_alphanumeric());
            match unit {
                Some(unit) if unit_ends => {
                    let count: u64 = digits.parse().map_err(|_| ExprError {
                        at,
                        message: format!(
                            "a duration is a whole number and a unit, not {:?}",
                            &text[at..=i]
                        ),
                    })?;
                    i += 1;
                    tokens.push(Token {
                        kind: Kind::Duration(count * unit),
                        at,
                    });
                }
                _ => {
                    if bytes.get(i).is_some_and(|b| b.is_ascii_alphabetic()) {
                        let end = i + bytes[i..]
                            .iter()
                            .take_while(|b| b.is_ascii_alphanumeric())
                            .count();
                        return Err(ExprError {
                            at,
                            message: format!(
                                "{:?} is not a duration: write a whole number and one of s, m, h, d, w (5m, 30s, 1h)",
                                &text[at..end]
                            ),
                        });
                    }
                    let n: f64 = digits.parse().map_err(|_| ExprError {
                        at,
                        message: format!("{digits:?} is not a number"),
                    })?;
                    tokens.push(Token {
                        kind: Kind::Number(n),
                        at,
                    });
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Word(text[at..i].to_ascii_lowercase()),
                at,
            });
        } else if c == b'"' || c == b'\'' {
            let close = text[i + 1..].find(c as char).ok_or_else(|| ExprError {
                at,
                message: "a string that does not end".into(),
            })?;
            tokens.push(Token {
                kind: Kind::Text(text[i + 1..i + 1 + close].to_string()),
                at,
            });
            i += close + 2;
        } else if let Some(sym) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) {
            tokens.push(Token {
                kind: Kind::Sym(sym),
                at,
            });
            i += sym.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            if ch == '.' {
                // A key written bare: `key(box.mem.total_kb)`.
                let is_key = |b: &u8| b.is_ascii_alphanumeric() || b"._-:$".contains(b);
                let start = at - bytes[..at].iter().rev().take_while(|b| is_key(b)).count();
                let end = at + bytes[at..].iter().take_while(|b| is_key(b)).count();
                return Err(ExprError {
                    at: start,
                    message: format!("a key goes in quotes: key(\"{}\")", &text[start..end]),
                });
            }
            return Err(ExprError {
                at,
                message: format!("unexpected character {ch:?}"),
            });
        }
    }
    Ok(tokens)
}

// ---- parsing ----

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn error_at(&self, at: usize, message: String) -> ExprError {
        ExprError { at, message }
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Token { kind: Kind::Sym(s), .. }) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token { kind: Kind::Word(w), .. }) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Type, node: Node, at: usize) -> Result<Node, ExprError> {
        if type_of(&node) == want {
            return Ok(node);
        }
        let message = match want {
            Type::Number => "a condition where a number belongs".to_string(),
            Type::Condition => "a number where a condition belongs: compare it".to_string(),
        };
        Err(self.error_at(at, message))
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let at = self.here();
        let mut left = self.and()?;
        while self.eat_word("or") {
            let right_at = self.here();
            let right = self.and()?;
            left = Node::Or(
                Box::new(self.expect(Type::Condition, left, at)?),
                Box::new(self.expect(Type::Condition, right, right_at)?),
            );
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let at = self.here();
        let mut left = self.not()?;
        while self.eat_word("and") {
            let right_at = self.here();
            let right = self.not()?;
            left = Node::And(
                Box::new(self.expect(Type::Condition, left, at)?),
                Box::new(self.expect(Type::Condition, right, right_at)?),
            );
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.eat_word("not") {
            let at = self.here();
            let inner = self.not()?;
            return Ok(Node::Not(Box::new(self.expect(
                Type::Condition,
                inner,
                at,
            )?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let at = self.here();
        let left = self.sum()?;
        let op = match self.peek().map(|t| &t.kind) {
            Some(Kind::Sym("<")) => Cmp::Lt,
            Some(Kind::Sym("<=")) => Cmp::Le,
            Some(Kind::Sym(">")) => Cmp::Gt,
            Some(Kind::Sym(">=")) => Cmp::Ge,
            Some(Kind::Sym("==")) => Cmp::Eq,
            Some(Kind::Sym("!=")) => Cmp::Ne,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right_at = self.here();
        let right = self.sum()?;
        Ok(Node::Cmp(
            op,
            Box::new(self.expect(Type::Number, left, at)?),
            Box::new(self.expect(Type::Number, right, right_at)?),
        ))
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let at = self.here();
        let mut left = self.product()?;
        loop {
            let op = if self.eat_sym("+") {
                Arith::Add
            } else if self.eat_sym("-") {
                Arith::Sub
            } else {
                return Ok(left);
            };
            let right_at = self.here();
            let right = self.product()?;
            left = Node::Arith(
                op,
                Box::new(self.expect(Type::Number, left, at)?),
                Box::new(self.expect(Type::Number, right, right_at)?),
            );
        }
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let at = self.here();
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_sym("*") {
                Arith::Mul
            } else if self.eat_sym("/") {
                Arith::Div
            } else if self.eat_sym("%") {
                Arith::Rem
            } else {
                return Ok(left);
            };
            let right_at = self.here();
            let right = self.unary()?;
            left = Node::Arith(
                op,
                Box::new(self.expect(Type::Number, left, at)?),
                Box::new(self.expect(Type::Number, right, right_at)?),
            );
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.eat_sym("-") {
            let at = self.here();
            let inner = self.unary()?;
            return Ok(Node::Neg(Box::new(self.expect(Type::Number, inner, at)?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        let Some(token) = self.peek() else {
            return Err(self.error_at(self.end, "the expression ends too soon".into()));
        };
        let at = token.at;
        let kind = token.kind.clone();
        self.pos += 1;
        match kind {
            Kind::Number(n) => Ok(Node::Number(n)),
            Kind::Sym("(") => {
                let inner = self.or()?;
                if !self.eat_sym(")") {
                    return Err(self.error_at(self.here(), "expected `)`".into()));
                }
                Ok(inner)
            }
            Kind::Word(word) => self.word(&word, at),
            other => Err(self.error_at(at, format!("unexpected {other}"))),
        }
    }

    fn word(&mut self, word: &str, at: usize) -> Result<Node, ExprError> {
        let func = match word {
            "last" => return Ok(Node::Last),
            "breaches" => return self.breaches_call(at),
            "key" => return self.key_call(at),
            "avg" => Func::Avg,
            "min" => Func::Min,
            "max" => Func::Max,
            "sum" => Func::Sum,
            "count" => Func::Count,
            "delta" => Func::Delta,
            "rate" => Func::Rate,
            "stddev" => Func::Stddev,
            _ => {
                return Err(self.error_at(
                    at,
                    format!(
                        "unknown word `{word}`: expected a number, last, key(\"…\"), \
                         breaches(\"…\"), avg, min, max, sum, count, delta, rate or stddev"
                    ),
                ))
            }
        };
        if !self.eat_sym("(") {
            return Ok(Node::Func(func, Window::All));
        }
        let window = match self.peek().map(|t| (t.kind.clone(), t.at)) {
            Some((Kind::Duration(0), at)) => {
                return Err(self.error_at(at, "a window of no time".into()))
            }
            Some((Kind::Duration(s), _)) => Window::Seconds(s),
            Some((Kind::Number(n), _)) if n >= 1.0 && n.fract() == 0.0 => {
                Window::Samples(n as usize)
            }
            _ => {
                return Err(self.error_at(
                    self.here(),
                    format!("{word}( takes a duration such as 5m or a count of samples such as 10"),
                ))
            }
        };
        self.pos += 1;
        if !self.eat_sym(")") {
            return Err(self.error_at(self.here(), "expected `)`".into()));
        }
        Ok(Node::Func(func, window))
    }

    fn breaches_call(&mut self, at: usize) -> Result<Node, ExprError> {
        let usage = "breaches takes the suffix of the key holding a range: breaches(\"warning\")";
        if !self.eat_sym("(") {
            return Err(self.error_at(at, usage.into()));
        }
        let Some(Token {
            kind: Kind::Text(suffix),
            ..
        }) = self.peek()
        else {
            return Err(self.error_at(self.here(), usage.into()));
        };
        let suffix = suffix.clone();
        self.pos += 1;
        if !self.eat_sym(")") {
            return Err(self.error_at(self.here(), "expected `)`".into()));
        }
        Ok(Node::Breaches(suffix))
    }

    fn key_call(&mut self, at: usize) -> Result<Node, ExprError> {
        let usage = "key takes a key in quotes: key(\"web1.up\")";
        if !self.eat_sym("(") {
            return Err(self.error_at(at, usage.into()));
        }
        let Some(Token {
            kind: Kind::Text(key),
            at: key_at,
        }) = self.peek()
        else {
            return Err(self.error_at(self.here(), usage.into()));
        };
        // `$1`… stand for what the rule's wildcards matched: checked as a part would be.
        let checked = super::glob::expand(key, &vec!["x".to_string(); 9]);
        if !spud_plugin_api::is_valid_key(&checked) {
            return Err(self.error_at(*key_at, format!("{key:?} is not a valid key")));
        }
        let key = key.clone();
        self.pos += 1;
        if !self.eat_sym(")") {
            return Err(self.error_at(self.here(), "expected `)`".into()));
        }
        Ok(Node::Key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way up to `sets` samples from `grid` (within the band) may come, one a second
    /// or several in a second, into a store of `cap` samples: the condition is never true.
    fn never_fires(
        c: &Condition,
        stored: &[Point],
        now: u64,
        grid: &[f64],
        sets: usize,
        cap: usize,
    ) -> bool {
        let scope = |points: &[Point], now: u64| -> Option<bool> {
            let lookup = |_: &str| None;
            let text = |_: &str| None;
            c.eval(&Scope {
                now,
                points,
                lookup: &lookup,
                key: "k",
                text: &text,
                captures: &[],
            })
        };
        let mut stack = vec![(stored.to_vec(), now, 0usize)];
        while let Some((points, at, taken)) = stack.pop() {
            if taken == sets {
                continue;
            }
            for &v in grid {
                for later in [0, 1] {
                    let mut next = points.clone();
                    next.insert(
                        0,
                        Point {
                            time: at + later,
                            value: Some(v),
                        },
                    );
                    next.truncate(cap);
                    if scope(&next, at + later) == Some(true) {
                        return false;
                    }
                    stack.push((next, at + later, taken + 1));
                }
            }
        }
        true
    }

    #[test]
    fn a_proof_for_a_few_sets_holds_for_every_way_they_may_come() {
        let now = 1_000;
        let histories: [&[f64]; 4] = [
            &[3.0, 5.0, 4.0, 6.0],
            &[10.0, 2.0, 7.0],
            &[1.0],
            &[0.0, 0.0, 8.0, 1.0, 1.0],
        ];
        let conditions = [
            "rate(1m) > 20",
            "rate(1m) > 1e9",
            "delta(1m) > 6",
            "delta(3) < -5",
            "sum(1m) > 30",
            "sum(2) >= 14",
            "count(1m) > 7",
            "count(3) >= 3",
            "stddev(1m) > 3",
            "avg(1m) * 2 > 19",
            "last - min(1m) > 8",
            "rate(1m) > 5 or delta(1m) > 9",
            "not (sum(1m) < 50)",
            "count(1m) == 6 and last > 1",
        ];
        let (mut proven, mut refused) = (0, 0);
        for text in conditions {
            let c = Condition::parse(text).unwrap();
            for history in histories {
                let stored = points(now, history);
                let lo = history.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = history.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                for sets in [1, 2, 3] {
                    let band = (lo, hi);
                    let outlook = Outlook {
                        points: &stored,
                        now,
                        band,
                        sets,
                    };
                    if c.cannot_fire(&outlook) {
                        proven += 1;
                        let grid = [lo, (lo + hi) / 2.0, hi];
                        assert!(
                            never_fires(&c, &stored, now, &grid, sets, history.len() + 1),
                            "`{text}` over {history:?}: proven for {sets} sets in {band:?}, but fires"
                        );
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        // The analysis proves most of these, and refuses the ones that can fire.
        assert!(
            proven > 60 && refused > 10,
            "proven {proven}, refused {refused}"
        );
        let stored = points(now, &[3.0, 5.0, 4.0]);
        let huge = Condition::parse("rate(1m) > 1e9").unwrap();
        assert!(huge.cannot_fire(&Outlook {
            points: &stored,
            now,
            band: (0.0, 10.0),
            sets: 64
        }));
        let small = Condition::parse("rate(1m) > 1").unwrap();
        assert!(!small.cannot_fire(&Outlook {
            points: &stored,
            now,
            band: (0.0, 10.0),
            sets: 1
        }));
        let other = Condition::parse("last > key(\"x\")").unwrap();
        assert!(!other.cannot_fire(&Outlook {
            points: &stored,
            now,
            band: (3.0, 5.0),
            sets: 1
        }));
    }

    fn points(now: u64, values: &[f64]) -> Vec<Point> {
        // values oldest first, one a second, the newest at `now`.
        let n = values.len() as u64;
        values
            .iter()
            .enumerate()
            .rev()
            .map(|(i, v)| Point {
                time: now - (n - 1 - i as u64),
                value: Some(*v),
            })
            .collect()
    }

    fn eval(text: &str, points: &[Point]) -> Option<bool> {
        let lookup = |key: &str| (key == "web1.up").then_some(1.0);
        let texts = |key: &str| match key {
            "k.warning" => Some("2:5".to_string()),
            "k.crit" => Some("@1:3".to_string()),
            "k.max" => Some("8".to_string()),
            _ => None,
        };
        let scope = Scope {
            now: points.first().map_or(0, |p| p.time),
            points,
            lookup: &lookup,
            captures: &[],
            key: "k",
            text: &texts,
        };
        Condition::parse(text).unwrap().eval(&scope)
    }

    #[test]
    fn terms_over_windows() {
        let p = points(1000, &[1.0, 2.0, 3.0, 10.0]);
        assert_eq!(eval("last > 8", &p), Some(true));
        assert_eq!(eval("avg(2) == 6.5", &p), Some(true));
        assert_eq!(eval("avg == 4", &p), Some(true));
        assert_eq!(eval("avg(1s) == 6.5", &p), Some(true));
        assert_eq!(eval("min(3) == 2 and max == 10", &p), Some(true));
        assert_eq!(eval("sum(1m) == 16", &p), Some(true));
        assert_eq!(eval("count(2s) == 3", &p), Some(true));
        assert_eq!(eval("delta(3) == 8", &p), Some(true));
        assert_eq!(eval("rate(4) == 3", &p), Some(true));
        assert_eq!(eval("stddev(2) == 3.5", &p), Some(true));
        assert_eq!(
            eval("key(\"web1.up\") == 1 and not last < 5", &p),
            Some(true)
        );
        assert_eq!(eval("(last - 2) * 2 / 4 % 3 == 1", &p), Some(true));
        assert_eq!(eval("-last < 0 or last > 100", &p), Some(true));
    }

    #[test]
    fn breaches_reads_munin_and_nagios_ranges_beside_the_key() {
        let p = |v: f64| points(10, &[v]);
        assert_eq!(eval("breaches(\"warning\")", &p(6.0)), Some(true));
        assert_eq!(eval("breaches(\"warning\")", &p(2.0)), Some(false));
        assert_eq!(eval("breaches(\"warning\")", &p(1.0)), Some(true));
        assert_eq!(eval("breaches(\"crit\")", &p(2.0)), Some(true));
        assert_eq!(eval("breaches(\"crit\")", &p(4.0)), Some(false));
        assert_eq!(eval("breaches(\"max\")", &p(9.0)), Some(true));
        assert_eq!(eval("breaches(\"max\")", &p(-9.0)), Some(false));
        assert_eq!(eval("breaches(\"none\")", &p(9.0)), None);
        assert_eq!(within("~:5", -1e9), Some(true));
        assert_eq!(within("x", 1.0), None);
    }

    #[test]
    fn rate_counts_a_reset_from_zero() {
        let p = points(100, &[10.0, 20.0, 5.0, 15.0]);
        // +10, reset to 5 (+5), +10 over 3 seconds.
        assert_eq!(eval("rate == 25 / 3", &p), Some(true));
    }

    #[test]
    fn unknown_never_fires_and_logic_is_kleene() {
        let text = [Point {
            time: 5,
            value: None,
        }];
        assert_eq!(eval("last > 1", &text), None);
        assert_eq!(eval("last > 1 or 1 < 2", &text), Some(true));
        assert_eq!(eval("last > 1 and 1 > 2", &text), Some(false));
        assert_eq!(eval("not last > 1", &text), None);
        assert_eq!(eval("avg(1m) > 1", &[]), None);
        assert_eq!(eval("key(\"nope\") > 1", &text), None);
        assert_eq!(eval("last / 0 > 1", &points(1, &[1.0])), None);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = Condition::parse("avg(1m) > ").unwrap_err();
        assert_eq!(e.at, 10);
        assert!(e.message.contains("ends too soon"));
        let e = Condition::parse("avg(1m)").unwrap_err();
        assert!(e.message.contains("not a condition"), "{e}");
        let e = Condition::parse("avgg(1m) > 1").unwrap_err();
        assert_eq!(e.at, 0);
        assert!(e.message.contains("unknown word `avgg`"));
        let e = Condition::parse("last > 1 + (2 > 1)").unwrap_err();
        assert!(
            e.message.contains("a condition where a number belongs"),
            "{e}"
        );
        let e = Condition::parse("avg(x) > 1").unwrap_err();
        assert!(e.message.contains("duration"), "{e}");
        assert!(Condition::parse("key(\"a b\") > 1").is_err());
        assert!(Condition::parse("last > 1 $").is_err());
        assert!(Condition::parse("last > 1 2").is_err());
    }

    #[test]
    fn subject_threshold_and_lookback() {
        let c = Condition::parse("avg(5m) > 4 and last > 1").unwrap();
        assert_eq!(c.threshold(), None);
        assert_eq!(c.lookback(), 300);
        let c = Condition::parse("avg(1m) > 4.5").unwrap();
        assert_eq!(c.threshold(), Some(4.5));
        let p = points(50, &[3.0, 5.0]);
        let lookup = |_: &str| None;
        let text = |_: &str| None;
        let scope = Scope {
            now: 50,
            points: &p,
            lookup: &lookup,
            captures: &[],
            key: "k",
            text: &text,
        };
        assert_eq!(c.subject(&scope), Some(4.0));
        assert!(Condition::parse("key(\"a\") > 1")
            .unwrap()
            .reads_other_keys());
        assert_eq!(
            Condition::parse("1.5e3 == 1500").unwrap().eval(&scope),
            Some(true)
        );
    }
}
