//! The evaluator: every rule against every key it matches, one key at a time, as sets
//! arrive, plus what time alone changes (`for`, `keep_firing_for`, `nodata`, windows that
//! age). Pure over a [`Source`] of samples and the caller's clock: the server drives it
//! with its store and the wall clock, `spud rules test` with a replayed series.

use hashbrown::HashMap;
use std::sync::Arc;

use super::expr::{Outlook, Point, Scope};
use super::glob::KeyGlob;
use super::instance::{Instance, State, Verdict};
use super::rules::Rule;
use crate::store::keyspace::{Quiet, QUIET_HORIZON};

/// Where the evaluator reads samples.
pub trait Source {
    /// The key's samples, newest first, into `into` (emptied first).
    fn points(&self, key: &str, into: &mut Vec<Point>);
    /// Another key's newest value, if it is a number.
    fn newest(&self, key: &str) -> Option<f64>;
    /// Another key's newest value as text.
    fn newest_text(&self, key: &str) -> Option<String>;
    /// After an evaluation: the sets that cannot change any state of this key's instances
    /// (None: any set may).
    fn set_quiet(&self, _key: &str, _quiet: Option<Quiet>) {}
}

/// A state change of one instance (or its first evaluation), for the state key and the
/// receivers.
#[derive(Debug, Clone)]
pub struct Change {
    pub rule: Arc<Rule>,
    pub key: Arc<str>,
    /// None: the instance is new (its state key is written for the first time).
    pub before: Option<State>,
    pub state: State,
    pub since: u64,
    pub active_since: u64,
    pub value: Option<f64>,
}

/// One instance as listed by `alerts`.
#[derive(Debug, Clone)]
pub struct Row {
    pub rule: Arc<Rule>,
    pub key: Arc<str>,
    pub state: State,
    pub since: u64,
    pub active_since: u64,
    pub value: Option<f64>,
}

/// Which rules match a key. One pass over a regex set for all rules; keys under `alert.`
/// match none, so an alert's own state never feeds another alert.
pub struct Matcher {
    globs: Vec<KeyGlob>,
    set: Option<regex::RegexSet>,
}

impl Matcher {
    pub fn new(rules: &[Arc<Rule>]) -> Matcher {
        let globs: Vec<KeyGlob> = rules.iter().map(|r| r.keys.clone()).collect();
        let sources = globs.iter().map(|g| g.source().to_string());
        // Too large a set (thousands of complex globs) falls back to one regex each.
        let set = regex::RegexSetBuilder::new(sources)
            .case_insensitive(true)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .ok();
        Matcher { globs, set }
    }

    pub fn is_match(&self, key: &str) -> bool {
        if key.starts_with("alert.") {
            return false;
        }
        match &self.set {
            Some(set) => set.is_match(key),
            None => self.globs.iter().any(|g| g.is_match(key)),
        }
    }

    /// The indices of the rules matching `key`.
    pub fn matching(&self, key: &str) -> Vec<u32> {
        if key.starts_with("alert.") {
            return Vec::new();
        }
        match &self.set {
            Some(set) => set.matches(key).iter().map(|i| i as u32).collect(),
            None => (0..self.globs.len() as u32)
                .filter(|&i| self.globs[i as usize].is_match(key))
                .collect(),
        }
    }
}

struct Tracked {
    instances: Vec<(u32, Instance)>,
    /// When this key must be looked at again with no new sample (Unix seconds).
    due: u64,
}

pub struct Engine {
    rules: Vec<Arc<Rule>>,
    matcher: Arc<Matcher>,
    keys: HashMap<Arc<str>, Tracked>,
    scratch: Vec<Point>,
    /// When the rules were taken (at the first tick for the first rules).
    loaded_at: Option<u64>,
    /// Rules with `absent` that no key has matched in time, by name: since when.
    absences: HashMap<String, u64>,
    /// Rules with `absent` a key has matched since the rules were taken: nothing more to
    /// look for (a key that stops is `nodata`'s).
    present: hashbrown::HashSet<String>,
}

/// Keys whose rules read other keys are looked at again this often while all is ok, and
/// every second while not.
const RECHECK_OK: u64 = 10;
const RECHECK_ACTIVE: u64 = 1;

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        Engine {
            matcher: Arc::new(Matcher::new(&rules)),
            rules,
            keys: HashMap::new(),
            scratch: Vec::new(),
            loaded_at: None,
            absences: HashMap::new(),
            present: hashbrown::HashSet::new(),
        }
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn matcher(&self) -> Arc<Matcher> {
        Arc::clone(&self.matcher)
    }

    /// Takes new rules. An instance whose rule (by name) still matches its key carries on
    /// with its state, re-evaluated by the caller's next pass; one whose rule is gone or no
    /// longer matches comes back as a change to `ok` if it was not, so receivers hear it
    /// resolved.
    pub fn replace_rules(&mut self, rules: Vec<Rule>, now: u64, out: &mut Vec<Change>) {
        let old_rules =
            std::mem::replace(&mut self.rules, rules.into_iter().map(Arc::new).collect());
        self.matcher = Arc::new(Matcher::new(&self.rules));
        for (key, tracked) in &mut self.keys {
            let mut old = std::mem::take(&mut tracked.instances);
            for index in self.matcher.matching(key) {
                let name = &self.rules[index as usize].name;
                let instance = match old
                    .iter()
                    .position(|(o, _)| old_rules[*o as usize].name == *name)
                {
                    Some(at) => old.swap_remove(at).1,
                    None => Instance::new(now),
                };
                tracked.instances.push((index, instance));
            }
            for (index, instance) in old.into_iter().filter(|(_, i)| i.state != State::Ok) {
                out.push(Change {
                    rule: Arc::clone(&old_rules[index as usize]),
                    key: Arc::clone(key),
                    before: Some(instance.state),
                    state: State::Ok,
                    since: now,
                    active_since: instance.active_since,
                    value: instance.value,
                });
            }
            tracked.due = 0;
        }
        self.keys.retain(|_, t| !t.instances.is_empty());
        self.loaded_at = Some(now);
        self.present.clear();
        // An absence whose rule is gone, or no longer asks for presence, resolves.
        let absences = std::mem::take(&mut self.absences);
        for (name, since) in absences {
            let kept = self
                .rules
                .iter()
                .find(|r| r.name == name && r.absent.is_some());
            match kept {
                Some(_) => {
                    self.absences.insert(name, since);
                }
                None => {
                    if let Some(rule) = old_rules.iter().find(|r| r.name == name) {
                        out.push(absence_resolved(rule, now, since));
                    }
                }
            }
        }
    }

    /// Rules with `absent`: one that no key has matched within that long of the rules'
    /// load is `nodata`, for an instance named by its glob; a key that comes resolves it.
    fn check_absences(&mut self, now: u64, out: &mut Vec<Change>) {
        let loaded = *self.loaded_at.get_or_insert(now);
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(wait) = rule.absent else { continue };
            if self.present.contains(&rule.name) {
                continue;
            }
            let present = self
                .keys
                .values()
                .any(|t| t.instances.iter().any(|(r, _)| *r as usize == index));
            if present {
                self.present.insert(rule.name.clone());
                if let Some(since) = self.absences.remove(&rule.name) {
                    out.push(absence_resolved(rule, now, since));
                }
            } else if !self.absences.contains_key(&rule.name) && now >= loaded.saturating_add(wait)
            {
                self.absences.insert(rule.name.clone(), now);
                out.push(absence_change(rule, None, State::Nodata, now, now));
            }
        }
    }

    /// Evaluates every rule matching `key` at `now`.
    pub fn evaluate(&mut self, key: &str, now: u64, source: &dyn Source, out: &mut Vec<Change>) {
        if !self.keys.contains_key(key) {
            let matching = self.matcher.matching(key);
            if matching.is_empty() {
                return;
            }
            // A key that never held a number (a label, a status word) is no instance: only
            // one that held numbers and then text is `nodata`.
            let mut points = std::mem::take(&mut self.scratch);
            source.points(key, &mut points);
            let numeric = points.iter().any(|p| p.value.is_some());
            self.scratch = points;
            if !numeric {
                return;
            }
            let instances = matching
                .into_iter()
                .map(|i| (i, Instance::new(now)))
                .collect();
            self.keys.insert(key.into(), Tracked { instances, due: 0 });
        }
        let (key, tracked) = self.keys.get_key_value_mut(key).expect("tracked above");
        let mut points = std::mem::take(&mut self.scratch);
        source.points(key, &mut points);
        evaluate_key(&self.rules, key, tracked, &points, now, source, out);
        let proof = quiet(&self.rules, tracked, &points, now);
        if let Some(Quiet {
            sets: Some(_),
            until,
            ..
        }) = proof
        {
            // Looked at again when a limited proof ends, so that its mark is renewed.
            tracked.due = tracked.due.min(until);
        }
        source.set_quiet(key, proof);
        self.scratch = points;
    }

    /// Evaluates the keys that time alone may have changed by `now`.
    pub fn tick(&mut self, now: u64, source: &dyn Source, out: &mut Vec<Change>) {
        let due: Vec<Arc<str>> = self
            .keys
            .iter()
            .filter(|(_, t)| t.due <= now)
            .map(|(k, _)| Arc::clone(k))
            .collect();
        for key in due {
            self.evaluate(&key, now, source, out);
        }
        self.check_absences(now, out);
    }

    /// Every instance not `ok`, by rule name then key.
    pub fn active(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .keys
            .iter()
            .flat_map(|(key, t)| {
                t.instances
                    .iter()
                    .filter(|(_, i)| i.state != State::Ok)
                    .map(|(r, i)| Row {
                        rule: Arc::clone(&self.rules[*r as usize]),
                        key: Arc::clone(key),
                        state: i.state,
                        since: i.since,
                        active_since: i.active_since,
                        value: i.value,
                    })
            })
            .collect();
        for (name, since) in &self.absences {
            if let Some(rule) = self.rules.iter().find(|r| r.name == *name) {
                rows.push(Row {
                    rule: Arc::clone(rule),
                    key: rule.keys_text.as_str().into(),
                    state: State::Nodata,
                    since: *since,
                    active_since: *since,
                    value: None,
                });
            }
        }
        rows.sort_by(|a, b| (&a.rule.name, &a.key).cmp(&(&b.rule.name, &b.key)));
        rows
    }

    /// The state of one instance, if it exists (an absence is named by its rule's glob).
    pub fn state_of(&self, rule: &str, key: &str) -> Option<State> {
        if let Some(r) = self
            .rules
            .iter()
            .find(|r| r.name == rule && r.keys_text == key)
        {
            if r.absent.is_some() && !self.keys.contains_key(key) {
                let absent = self.absences.contains_key(rule);
                return Some(if absent { State::Nodata } else { State::Ok });
            }
        }
        let t = self.keys.get(key)?;
        t.instances
            .iter()
            .find(|(r, _)| self.rules[*r as usize].name == rule)
            .map(|(_, i)| i.state)
    }

    pub fn instance_count(&self) -> usize {
        self.keys.values().map(|t| t.instances.len()).sum()
    }
}

/// A change of a rule's absence instance (named by its glob).
fn absence_change(
    rule: &Arc<Rule>,
    before: Option<State>,
    state: State,
    now: u64,
    active_since: u64,
) -> Change {
    Change {
        rule: Arc::clone(rule),
        key: rule.keys_text.as_str().into(),
        before,
        state,
        since: now,
        active_since,
        value: None,
    }
}

/// A rule's absence resolved: a matching key came (or the rule went).
fn absence_resolved(rule: &Arc<Rule>, now: u64, since: u64) -> Change {
    absence_change(rule, Some(State::Nodata), State::Ok, now, since)
}

/// The sets that cannot change any instance of the key, only while every instance is `ok`:
/// - any number of sets, at any time, of values within a band every condition proves it
///   cannot fire in while it holds all the samples (`Condition::quiet_band`: conditions of
///   `last`, `avg`, `min`, `max`);
/// - else, for the other conditions, a few sets (`LIMITED_SETS`) of values near the stored
///   ones, before the key's next look (`due`, when a sample leaves a window by time), if
///   every condition proves it cannot fire with them (`Condition::cannot_fire`).
fn quiet(rules: &[Arc<Rule>], tracked: &Tracked, points: &[Point], now: u64) -> Option<Quiet> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        let v = p.value?; // text stored: nodata is a state a number may leave
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if tracked.instances.iter().any(|(_, i)| i.state != State::Ok) {
        return None;
    }
    let conditions = || {
        tracked.instances.iter().flat_map(|(index, _)| {
            let rule = &rules[*index as usize];
            rule.warn.iter().chain(&rule.crit)
        })
    };
    let unlimited = conditions().try_fold((f64::NEG_INFINITY, f64::INFINITY), |band, c| {
        let (a, b) = c.quiet_band(lo, hi)?;
        Some((band.0.max(a), band.1.min(b)))
    });
    if let Some(band) = unlimited {
        return Some(Quiet {
            band,
            sets: None,
            until: 0,
        });
    }
    let until = tracked.due.min(now + QUIET_HORIZON);
    if until <= now || points.is_empty() {
        return None;
    }
    // Values as far again from the stored ones as they spread (or are from 0), not below
    // 0 if none is (a counter stays one); failing that, the stored range itself for one set.
    let reach = (hi - lo).max(lo.abs()).max(hi.abs()).max(1.0);
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    let near = ((lo - reach).max(floor), hi + reach);
    for (band, sets) in [(near, LIMITED_SETS), ((lo, hi), 1)] {
        let outlook = Outlook {
            points,
            now,
            band,
            sets: sets as usize,
        };
        if conditions().all(|c| c.cannot_fire(&outlook)) {
            return Some(Quiet {
                band,
                sets: Some(sets),
                until,
            });
        }
    }
    None
}

/// Sets a limited proof covers: each evaluation then stands for this many sets.
const LIMITED_SETS: u8 = 64;

fn evaluate_key(
    rules: &[Arc<Rule>],
    key: &Arc<str>,
    tracked: &mut Tracked,
    points: &[Point],
    now: u64,
    source: &dyn Source,
    out: &mut Vec<Change>,
) {
    let lookup = |other: &str| source.newest(other);
    let text = |other: &str| source.newest_text(other);
    let newest = points.first();
    let mut due = u64::MAX;
    for (index, instance) in &mut tracked.instances {
        let rule = &rules[*index as usize];
        let captures = rule.captures(key);
        let scope = Scope {
            now,
            points,
            lookup: &lookup,
            key,
            text: &text,
            captures: &captures,
        };
        let stale_at = match (newest, rule.nodata) {
            (Some(p), Some(d)) => Some(p.time.saturating_add(d)),
            _ => None,
        };
        let nodata = match newest {
            None => true,
            Some(p) => p.value.is_none() || stale_at.is_some_and(|at| now >= at),
        };
        let eval = |c: &Option<super::expr::Condition>| c.as_ref().and_then(|c| c.eval(&scope));
        let verdict = Verdict {
            warn: eval(&rule.warn),
            crit: eval(&rule.crit),
            clear: eval(&rule.clear),
            nodata,
        };
        let first = std::mem::take(&mut instance.fresh);
        let before = instance.step(rule, now, verdict);
        let governing = match instance.state {
            State::Critical => rule.crit.as_ref().or(rule.warn.as_ref()),
            _ => rule.warn.as_ref().or(rule.crit.as_ref()),
        };
        instance.value = governing
            .and_then(|c| c.subject(&scope))
            .or_else(|| newest.and_then(|p| p.value));
        if before.is_some() || first {
            out.push(Change {
                rule: Arc::clone(rule),
                key: Arc::clone(key),
                before: if first { None } else { before },
                state: instance.state,
                since: instance.since,
                active_since: instance.active_since,
                value: instance.value,
            });
        }
        if let Some(at) = instance.next_change(rule) {
            due = due.min(at);
        }
        if let Some(at) = stale_at.filter(|&at| at > now) {
            due = due.min(at);
        }
        // A window changes only when a sample leaves it: looked at again at that moment.
        for condition in [&rule.warn, &rule.crit, &rule.clear].into_iter().flatten() {
            if let Some(at) = condition.next_window_change(points, now) {
                due = due.min(at);
            }
        }
        // Another key's value may change at any time: looked at again every so often.
        if rule.reads_other_keys {
            let every = if instance.state == State::Ok {
                RECHECK_OK
            } else {
                RECHECK_ACTIVE
            };
            due = due.min(now + every);
        }
    }
    tracked.due = due;
}

#[cfg(test)]
mod tests {
    use super::super::rules::RuleSet;
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Fake(
        BTreeMap<String, Vec<Point>>,
        std::cell::RefCell<Vec<Option<Quiet>>>,
    );

    impl Source for Fake {
        fn points(&self, key: &str, into: &mut Vec<Point>) {
            into.clear();
            into.extend(self.0.get(key).into_iter().flatten().rev());
        }
        fn newest(&self, key: &str) -> Option<f64> {
            self.0.get(key)?.last()?.value
        }
        fn newest_text(&self, _: &str) -> Option<String> {
            None
        }
        fn set_quiet(&self, _: &str, quiet: Option<Quiet>) {
            self.1.borrow_mut().push(quiet);
        }
    }

    #[test]
    fn rules_without_a_band_get_a_proof_for_the_next_sets_until_a_window_moves() {
        let mut src = Fake::default();
        let history: Vec<Point> = (0..10)
            .map(|i| Point {
                time: 100 + i,
                value: Some(i as f64),
            })
            .collect();
        src.0.insert("k".into(), history);
        let mut out = Vec::new();
        let mut proof = |warn: &str| {
            let mut e = engine(&format!(
                "[[alert]]\nname = \"r\"\nkeys = \"k\"\nwarn = \"{warn}\"\n"
            ));
            e.evaluate("k", 109, &src, &mut out);
            src.1.borrow_mut().pop().unwrap()
        };
        // Far from its threshold: 64 sets near the stored values (none below 0), until
        // the oldest sample leaves the minute's window.
        let q = proof("rate(1m) > 1e6").expect("a proof");
        assert_eq!((q.band, q.sets, q.until), ((0.0, 18.0), Some(64), 161));
        // Near it: not even one set of the stored range is proven.
        assert_eq!(proof("delta(1m) > 8.5"), None);
        // Bounded conditions keep their unlimited band.
        let q = proof("avg(1m) > 50").expect("a band");
        assert_eq!((q.band, q.sets), ((f64::NEG_INFINITY, 50.0), None));
    }

    fn engine(text: &str) -> Engine {
        Engine::new(
            RuleSet::parse(text, std::path::Path::new("t"))
                .unwrap()
                .rules,
        )
    }

    #[test]
    fn one_instance_per_matching_key_and_none_for_alert_keys() {
        let mut e = engine("[[alert]]\nname = \"hi\"\nkeys = \"web*.load\"\nwarn = \"last > 4\"\n");
        let mut src = Fake::default();
        let mut out = Vec::new();
        for key in ["web1.load", "web2.load", "db1.load", "alert.hi.web1.load"] {
            src.0.insert(
                key.into(),
                vec![Point {
                    time: 10,
                    value: Some(5.0),
                }],
            );
            e.evaluate(key, 10, &src, &mut out);
        }
        let fired: Vec<_> = out.iter().map(|c| (&*c.key, c.before, c.state)).collect();
        assert_eq!(
            fired,
            [
                ("web1.load", None, State::Warning),
                ("web2.load", None, State::Warning)
            ]
        );
        assert_eq!(e.instance_count(), 2);
        assert_eq!(e.active().len(), 2);
    }

    #[test]
    fn first_evaluation_reports_ok_and_text_is_nodata() {
        let mut e = engine("[[alert]]\nname = \"hi\"\nkeys = \"k\"\nwarn = \"last > 4\"\n");
        let mut src = Fake::default();
        let mut out = Vec::new();
        src.0.insert(
            "k".into(),
            vec![Point {
                time: 1,
                value: Some(1.0),
            }],
        );
        e.evaluate("k", 1, &src, &mut out);
        assert_eq!((out[0].before, out[0].state), (None, State::Ok));
        src.0.get_mut("k").unwrap().push(Point {
            time: 2,
            value: None,
        });
        e.evaluate("k", 2, &src, &mut out);
        assert_eq!(
            (out[1].before, out[1].state),
            (Some(State::Ok), State::Nodata)
        );
    }

    #[test]
    fn nodata_and_for_come_due_without_samples() {
        let mut e = engine("[[alert]]\nname = \"hi\"\nkeys = \"k\"\nwarn = \"last > 4\"\nfor = \"5s\"\nnodata = \"30s\"\n");
        let mut src = Fake::default();
        let mut out = Vec::new();
        src.0.insert(
            "k".into(),
            vec![Point {
                time: 100,
                value: Some(9.0),
            }],
        );
        e.evaluate("k", 100, &src, &mut out);
        assert_eq!(out.last().unwrap().state, State::Pending);
        e.tick(104, &src, &mut out);
        assert_eq!(e.state_of("hi", "k"), Some(State::Pending));
        e.tick(105, &src, &mut out);
        assert_eq!(e.state_of("hi", "k"), Some(State::Warning));
        e.tick(130, &src, &mut out);
        assert_eq!(e.state_of("hi", "k"), Some(State::Nodata));
    }

    #[test]
    fn a_removed_rule_resolves_and_an_edited_one_keeps_state() {
        let mut e = engine("[[alert]]\nname = \"a\"\nkeys = \"k\"\nwarn = \"last > 4\"\n[[alert]]\nname = \"b\"\nkeys = \"k\"\nwarn = \"last > 1\"\n");
        let mut src = Fake::default();
        let mut out = Vec::new();
        src.0.insert(
            "k".into(),
            vec![Point {
                time: 1,
                value: Some(9.0),
            }],
        );
        e.evaluate("k", 1, &src, &mut out);
        out.clear();
        let rules = RuleSet::parse(
            "[[alert]]\nname = \"b\"\nkeys = \"k\"\nwarn = \"last > 2\"\n",
            std::path::Path::new("t"),
        )
        .unwrap()
        .rules;
        e.replace_rules(rules, 2, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((&*out[0].rule.name, out[0].state), ("a", State::Ok));
        assert_eq!(e.state_of("b", "k"), Some(State::Warning));
    }

    fn point(time: u64, value: f64) -> Point {
        Point {
            time,
            value: Some(value),
        }
    }

    #[test]
    fn a_window_is_looked_at_again_the_second_its_last_sample_leaves() {
        let mut e =
            engine("[[alert]]\nname = \"gone\"\nkeys = \"k\"\ncrit = \"count(30s) == 0\"\n");
        let mut src = Fake::default();
        let mut out = Vec::new();
        src.0.insert("k".into(), vec![point(100, 1.0)]);
        e.evaluate("k", 100, &src, &mut out);
        // Due exactly when the sample leaves the window (not at the next ten-second look).
        assert_eq!(e.keys["k"].due, 131);
        for now in 101..=130 {
            e.tick(now, &src, &mut out);
            assert_eq!(e.state_of("gone", "k"), Some(State::Ok), "at {now}");
        }
        e.tick(131, &src, &mut out);
        assert_eq!(e.state_of("gone", "k"), Some(State::Critical));
    }

    #[test]
    fn an_absent_key_is_nodata_at_its_time_and_resolves_when_it_comes() {
        let mut e = engine(
            "[[alert]]\nname = \"up\"\nkeys = \"db1.up\"\nabsent = \"30s\"\nnodata_severity = \"critical\"\n",
        );
        let mut src = Fake::default();
        let mut out = Vec::new();
        e.tick(1000, &src, &mut out);
        e.tick(1029, &src, &mut out);
        assert!(out.is_empty(), "{out:?}");
        e.tick(1030, &src, &mut out);
        let absent: Vec<_> = out.iter().map(|c| (&*c.key, c.before, c.state)).collect();
        assert_eq!(absent, [("db1.up", None, State::Nodata)]);
        assert_eq!(e.state_of("up", "db1.up"), Some(State::Nodata));
        assert_eq!(e.active().len(), 1);
        out.clear();
        src.0.insert("db1.up".into(), vec![point(1040, 1.0)]);
        e.evaluate("db1.up", 1040, &src, &mut out);
        e.tick(1040, &src, &mut out);
        assert!(
            out.iter().any(|c| &*c.key == "db1.up"
                && c.before == Some(State::Nodata)
                && c.state == State::Ok),
            "{out:?}"
        );
        assert_eq!(e.state_of("up", "db1.up"), Some(State::Ok));
    }

    #[test]
    fn captures_read_the_same_hosts_other_keys() {
        let mut e = engine(
            "[[alert]]\nname = \"mem\"\nkeys = \"*.mem.available_kb\"\n\
             warn = 'last * 100 / key(\"$1.mem.total_kb\") < 10'\nlabels = { host = \"$1\" }\n",
        );
        let mut src = Fake::default();
        let mut out = Vec::new();
        for (host, available) in [("web1", 50.0), ("web2", 900.0)] {
            src.0
                .insert(format!("{host}.mem.total_kb"), vec![point(10, 1000.0)]);
            src.0.insert(
                format!("{host}.mem.available_kb"),
                vec![point(10, available)],
            );
            e.evaluate(&format!("{host}.mem.available_kb"), 10, &src, &mut out);
        }
        assert_eq!(
            e.state_of("mem", "web1.mem.available_kb"),
            Some(State::Warning)
        );
        assert_eq!(e.state_of("mem", "web2.mem.available_kb"), Some(State::Ok));
    }
}
