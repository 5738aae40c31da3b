//! `spud rules test RULES TESTS`: series written in a test file are replayed, second by
//! second, into an in-process server through the same evaluator the server runs, and the
//! states expected at given times are checked. Like `promtool test rules`.
//!
//! ```toml
//! [[test]]
//! name = "load goes high and settles"
//! interval = "10s"                  # between a series' values (default 10s)
//! [test.series]
//! "web1.load.1" = "1 1 5 5 5 9 2x6" # numbers, `_` for no sample, words for text, VxN for N times
//! [[test.expect]]
//! at = "30s"                        # from the start
//! alert = "load_high"
//! key = "web1.load.1"
//! state = "pending"
//! [[test.expect]]
//! at = "50s"
//! active = ["load_high web1.load.1 critical"]   # exactly these instances are not ok
//! [[test.expect]]
//! at = "50s"
//! alert = "load_high"
//! key = "web1.load.1"
//! state = "critical"
//! value = "9"                       # the value receivers are told
//! labels = { severity = "critical" }
//! annotations = { summary = "web1.load.1 is 9" }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::engine::Engine;
use super::instance::State;
use super::rules::RuleSet;
use super::StoreSource;
use crate::toml_error::line_of;
use crate::{Config, Server};

/// Where replays start: a fixed, plausible Unix time, so that `now - 1h` never goes below 0.
const START: u64 = 1_700_000_000;
/// Longest replay, in seconds.
const LONGEST: u64 = 7 * 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "test")]
    tests: Vec<Spanned<Test>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Test {
    name: String,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    history: Option<usize>,
    series: BTreeMap<String, Spanned<String>>,
    #[serde(rename = "expect")]
    expects: Vec<Spanned<Expect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: Spanned<String>,
    alert: Option<String>,
    key: Option<String>,
    state: Option<Spanned<String>>,
    /// With alert, key and state: the instance's value as receivers see it (`5`, `0.25`).
    value: Option<String>,
    /// With alert, key and state: labels it carries (others may be there too).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// With alert, key and state: annotations it carries (`summary`, `value`, `state`).
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    active: Option<Vec<String>>,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: usize,
    /// One line per failed expectation.
    pub failures: Vec<String>,
}

/// Runs every test in `tests` against the rules in `rules`. Err: a file is unreadable or
/// malformed (every problem, one line each, with file and line).
pub fn run(rules: &Path, tests: &Path) -> Result<Outcome, Vec<String>> {
    let set = RuleSet::load(rules).map_err(|e| e.problems)?;
    let text =
        std::fs::read_to_string(tests).map_err(|e| vec![format!("{}: {e}", tests.display())])?;
    let file: File =
        toml::from_str(&text).map_err(|e| vec![crate::toml_error::describe(&e, &text, tests)])?;
    let mut outcome = Outcome::default();
    for test in &file.tests {
        let plan = plan(test, &text, tests)?;
        replay(&set, test.get_ref(), &plan, &mut outcome);
    }
    Ok(outcome)
}

/// A test made concrete: samples and checks by second.
struct Plan {
    samples: BTreeMap<u64, Vec<(String, String)>>,
    checks: BTreeMap<u64, Vec<Check>>,
    history: usize,
}

enum Check {
    One {
        alert: String,
        key: String,
        state: State,
        /// `value`, `labels`, `annotations`: each expected text, by name.
        carries: Vec<(String, String)>,
        line: usize,
        at: String,
    },
    Active {
        want: Vec<String>,
        line: usize,
        at: String,
    },
}

fn plan(test: &Spanned<Test>, text: &str, path: &Path) -> Result<Plan, Vec<String>> {
    let t = test.get_ref();
    let mut problems = Vec::new();
    let mut problem = |at: usize, what: String| {
        problems.push(format!(
            "{}:{}: test {:?}: {what}",
            path.display(),
            line_of(text, at),
            t.name
        ))
    };
    let duration =
        |s: &Spanned<String>| humantime::parse_duration(s.get_ref()).map(|d| d.as_secs());
    let interval = match &t.interval {
        None => 10,
        Some(i) => match duration(i) {
            Ok(0) | Err(_) => {
                problem(
                    i.span().start,
                    format!("interval {:?} is not a duration such as 10s", i.get_ref()),
                );
                10
            }
            Ok(s) => s,
        },
    };
    let mut samples: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for (key, values) in &t.series {
        if !spud_plugin_api::is_valid_key(key) {
            problem(values.span().start, format!("{key:?} is not a valid key"));
            continue;
        }
        let mut step = 0u64;
        for token in values.get_ref().split_whitespace() {
            let (value, times) = match token.rsplit_once('x') {
                Some((v, n)) if !v.is_empty() && n.parse::<u64>().is_ok() => {
                    (v, n.parse().unwrap_or(1))
                }
                _ => (token, 1),
            };
            // Text stands for a status word; a token with a digit in it was meant to be a
            // number (`x3`, `3.5.1`), and is said rather than stored as text.
            let numeric = value.parse::<f64>().is_ok();
            if !numeric && value.bytes().any(|b| b.is_ascii_digit()) {
                problem(
                    values.span().start,
                    format!(
                        "{key}: {token:?} is not a number, `_`, a word or VxN (a value V, N times)"
                    ),
                );
                break;
            }
            for _ in 0..times {
                if value != "_" {
                    samples
                        .entry(START + step * interval)
                        .or_default()
                        .push((key.clone(), value.to_string()));
                }
                step += 1;
            }
        }
    }
    let mut checks: BTreeMap<u64, Vec<Check>> = BTreeMap::new();
    for e in &t.expects {
        let line = line_of(text, e.span().start);
        let x = e.get_ref();
        let at = match duration(&x.at) {
            Ok(s) if s <= LONGEST => s,
            _ => {
                problem(
                    x.at.span().start,
                    format!("at = {:?} is not a duration within 7 days", x.at.get_ref()),
                );
                continue;
            }
        };
        let check = match (&x.alert, &x.key, &x.state, &x.active) {
            (Some(alert), Some(key), Some(state), None) => {
                match State::from_word(state.get_ref()) {
                    Some(s) => Check::One {
                        alert: alert.clone(),
                        key: key.clone(),
                        state: s,
                        carries: x
                            .value
                            .iter()
                            .map(|v| ("annotation value".to_string(), v.clone()))
                            .chain(
                                x.labels
                                    .iter()
                                    .map(|(k, v)| (format!("label {k}"), v.clone())),
                            )
                            .chain(
                                x.annotations
                                    .iter()
                                    .map(|(k, v)| (format!("annotation {k}"), v.clone())),
                            )
                            .collect(),
                        line,
                        at: x.at.get_ref().clone(),
                    },
                    None => {
                        problem(state.span().start, format!("state {:?}: expected ok, pending, warning, critical, nodata or flapping", state.get_ref()));
                        continue;
                    }
                }
            }
            (None, None, None, Some(active)) => {
                let mut want: Vec<String> = active
                    .iter()
                    .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect();
                want.sort();
                Check::Active {
                    want,
                    line,
                    at: x.at.get_ref().clone(),
                }
            }
            _ => {
                problem(e.span().start, "an expectation has either alert, key and state, or active = [\"RULE KEY STATE\", …]".into());
                continue;
            }
        };
        checks.entry(START + at).or_default().push(check);
    }
    if problems.is_empty() {
        Ok(Plan {
            samples,
            checks,
            history: t.history.unwrap_or(100).max(1),
        })
    } else {
        Err(problems)
    }
}

/// What an instance carries that differs from `carries` (None: all as expected). Read
/// from the notice receivers would get now.
fn carried(
    engine: &Engine,
    alert: &str,
    key: &str,
    carries: &[(String, String)],
) -> Option<String> {
    if carries.is_empty() {
        return None;
    }
    let row = engine
        .active()
        .into_iter()
        .find(|r| r.rule.name == alert && &*r.key == key);
    let Some(row) = row else {
        return Some("not active, so it carries no labels or annotations".into());
    };
    let notice = super::notice_of_row(&row);
    for (what, want) in carries {
        let got = match what.split_once(' ') {
            Some(("label", name)) => notice.labels.get(name),
            Some((_, name)) => notice.annotations.get(name),
            None => None,
        };
        if got != Some(want) {
            return Some(format!("{what} is {got:?}, expected {want:?}"));
        }
    }
    None
}

/// Second by second, as the server's alerts thread does: the samples of that second are
/// stored and their keys evaluated, then what time alone changed, then the checks.
fn replay(set: &RuleSet, test: &Test, plan: &Plan, outcome: &mut Outcome) {
    let server = Server::new(Config {
        history: plan.history,
        ..Config::default()
    });
    let mut engine = Engine::new(set.rules.clone());
    let source = StoreSource(&server);
    let mut changes = Vec::new();
    let last = plan
        .samples
        .keys()
        .chain(plan.checks.keys())
        .max()
        .copied()
        .unwrap_or(START);
    for now in START..=last {
        if let Some(samples) = plan.samples.get(&now) {
            for (key, value) in samples {
                let _ = server.set(key, value, Some(now));
            }
            for (key, _) in samples {
                engine.evaluate(key, now, &source, &mut changes);
            }
        }
        engine.tick(now, &source, &mut changes);
        changes.clear();
        for check in plan.checks.get(&now).into_iter().flatten() {
            match check {
                Check::One {
                    alert,
                    key,
                    state,
                    carries,
                    line,
                    at,
                } => {
                    let got = engine.state_of(alert, key);
                    if got == Some(*state) {
                        match carried(&engine, alert, key, carries) {
                            None => outcome.passed += 1,
                            Some(wrong) => outcome.failures.push(format!(
                                "line {line}: test {:?} at {at}: {alert} {key}: {wrong}",
                                test.name
                            )),
                        }
                    } else {
                        let got = got.map_or(
                            "not an instance (no sample yet, or the rule does not match)",
                            State::word,
                        );
                        outcome.failures.push(format!(
                            "line {line}: test {:?} at {at}: {alert} {key} is {got}, expected {}",
                            test.name,
                            state.word()
                        ));
                    }
                }
                Check::Active { want, line, at } => {
                    let got: Vec<String> = engine
                        .active()
                        .iter()
                        .map(|r| format!("{} {} {}", r.rule.name, r.key, r.state.word()))
                        .collect();
                    if got == *want {
                        outcome.passed += 1;
                    } else {
                        outcome.failures.push(format!(
                            "line {line}: test {:?} at {at}: active {got:?}, expected {want:?}",
                            test.name
                        ));
                    }
                }
            }
        }
    }
}
