//! One alert instance (a rule and one key it watches): its state machine, pure and driven
//! by the caller's clock, so `spud rules test` replays exactly what the server does.
//!
//! ```text
//!  ok ──condition holds──▶ pending ──held `for`──▶ warning / critical ──▶ ok
//!   ▲                        │                      (after `clear` holds, and
//!   └──────stops holding─────┘                       `keep_firing_for` has passed)
//!  any ──no sample for `nodata`, or not a number──▶ nodata
//!  any ──more than N settled-state changes in the window──▶ flapping ──settles──▶ its state
//! ```

use std::collections::VecDeque;

use super::rules::Rule;

/// What the key `alert.<rule>.<key>` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Ok,
    Pending,
    Warning,
    Critical,
    Nodata,
    Flapping,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Ok,
        State::Pending,
        State::Warning,
        State::Critical,
        State::Nodata,
        State::Flapping,
    ];

    pub fn word(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Pending => "pending",
            State::Warning => "warning",
            State::Critical => "critical",
            State::Nodata => "nodata",
            State::Flapping => "flapping",
        }
    }

    pub fn from_word(word: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.word() == word)
    }

    /// Whether receivers hear of it: every state but `ok` and `pending`.
    pub fn is_firing(self) -> bool {
        !matches!(self, State::Ok | State::Pending)
    }

    /// What a receiver is told, without pending: ok until it fires.
    fn settled(self) -> State {
        match self {
            State::Pending => State::Ok,
            other => other,
        }
    }
}

/// What the rule's conditions said at one evaluation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verdict {
    pub warn: Option<bool>,
    pub crit: Option<bool>,
    pub clear: Option<bool>,
    /// No fresh sample, or the newest one is not a number.
    pub nodata: bool,
}

#[derive(Debug, Clone)]
pub struct Instance {
    /// The public state.
    pub state: State,
    /// Since when (Unix seconds) it has held `state`.
    pub since: u64,
    /// When the current firing began (Alertmanager's `startsAt`).
    pub active_since: u64,
    /// The rule's subject at the last evaluation (`{value}`).
    pub value: Option<f64>,
    /// Not evaluated yet.
    pub fresh: bool,
    /// The state without flapping.
    base: State,
    pending_since: Option<u64>,
    /// The last time warn or crit held.
    last_held: u64,
    /// Times of recent settled-state changes, oldest first.
    changes: VecDeque<u64>,
}

impl Instance {
    pub fn new(now: u64) -> Instance {
        Instance {
            state: State::Ok,
            since: now,
            active_since: now,
            value: None,
            fresh: true,
            base: State::Ok,
            pending_since: None,
            last_held: 0,
            changes: VecDeque::new(),
        }
    }

    /// Moves the instance on by one evaluation; returns the previous public state if it
    /// changed.
    pub fn step(&mut self, rule: &Rule, now: u64, v: Verdict) -> Option<State> {
        let firing = matches!(self.base, State::Warning | State::Critical);
        let mut target = if v.nodata {
            State::Nodata
        } else if v.crit == Some(true) {
            State::Critical
        } else if v.warn == Some(true) {
            State::Warning
        } else {
            State::Ok
        };
        if matches!(target, State::Warning | State::Critical) {
            self.last_held = now;
        }
        if firing && target == State::Ok {
            let clear_holds = rule.clear.is_none() || v.clear == Some(true);
            let kept = now < self.last_held.saturating_add(rule.keep_firing_for);
            if !clear_holds || kept {
                target = self.base;
            }
        }
        let base = match target {
            State::Warning | State::Critical if firing => target,
            State::Warning | State::Critical => {
                let since = *self.pending_since.get_or_insert(now);
                if now >= since.saturating_add(rule.pending_for) {
                    target
                } else {
                    State::Pending
                }
            }
            other => other,
        };
        if base != State::Pending {
            self.pending_since = None;
        }
        if base.settled() != self.base.settled() {
            self.changes.push_back(now);
        }
        self.base = base;

        let window_start = now.saturating_sub(rule.flapping.window);
        while self.changes.front().is_some_and(|&t| t < window_start) {
            self.changes.pop_front();
        }
        // Enter above the limit, leave at half of it or below: hysteresis, as Nagios does.
        let limit = rule.flapping.changes;
        let threshold = if self.state == State::Flapping {
            limit / 2
        } else {
            limit
        };
        let public = if limit > 0 && self.changes.len() > threshold {
            State::Flapping
        } else {
            base
        };
        if public == self.state {
            return None;
        }
        let before = self.state;
        if public.is_firing() && !before.is_firing() {
            self.active_since = now;
        }
        self.state = public;
        self.since = now;
        Some(before)
    }

    /// When time alone (no new sample) could change this instance, if it can.
    pub fn next_change(&self, rule: &Rule) -> Option<u64> {
        let mut due = None::<u64>;
        let mut at = |t: u64| due = Some(due.map_or(t, |d| d.min(t)));
        if let Some(since) = self.pending_since {
            at(since.saturating_add(rule.pending_for));
        }
        if matches!(self.base, State::Warning | State::Critical) && rule.keep_firing_for > 0 {
            at(self.last_held.saturating_add(rule.keep_firing_for));
        }
        if let Some(&oldest) = self.changes.front() {
            at(oldest.saturating_add(rule.flapping.window) + 1);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::RuleSet;
    use super::*;

    fn rule(extra: &str) -> Rule {
        let text = format!("[[alert]]\nname = \"r\"\nkeys = \"k\"\nwarn = \"last > 1\"\n{extra}");
        RuleSet::parse(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .rules
            .remove(0)
    }

    fn held(warn: bool) -> Verdict {
        Verdict {
            warn: Some(warn),
            ..Verdict::default()
        }
    }

    /// Steps through `(time, verdict)` and returns the public state after each.
    fn run(rule: &Rule, steps: &[(u64, Verdict)]) -> Vec<&'static str> {
        let mut i = Instance::new(0);
        steps
            .iter()
            .map(|&(t, v)| {
                i.step(rule, t, v);
                i.state.word()
            })
            .collect()
    }

    #[test]
    fn pending_for_then_firing_then_ok() {
        let r = rule("for = \"30s\"");
        let states = run(
            &r,
            &[
                (0, held(true)),
                (29, held(true)),
                (30, held(true)),
                (40, held(false)),
            ],
        );
        assert_eq!(states, ["pending", "pending", "warning", "ok"]);
        // A blip shorter than `for` never fires.
        assert_eq!(
            run(&r, &[(0, held(true)), (10, held(false)), (35, held(true))]),
            ["pending", "ok", "pending"]
        );
    }

    #[test]
    fn crit_wins_and_escalates_at_once() {
        let r = rule("crit = \"last > 8\"\nfor = \"10s\"");
        let crit = Verdict {
            warn: Some(true),
            crit: Some(true),
            ..Verdict::default()
        };
        assert_eq!(
            run(
                &r,
                &[
                    (0, held(true)),
                    (10, held(true)),
                    (11, crit),
                    (12, held(true))
                ]
            ),
            ["pending", "warning", "critical", "warning"]
        );
    }

    #[test]
    fn keep_firing_for_and_hysteresis() {
        let r = rule("keep_firing_for = \"1m\"");
        assert_eq!(
            run(
                &r,
                &[
                    (0, held(true)),
                    (30, held(false)),
                    (59, held(false)),
                    (60, held(false))
                ]
            ),
            ["warning", "warning", "warning", "ok"]
        );
        let r = rule("clear = \"last < 0.5\"");
        let no_clear = Verdict {
            warn: Some(false),
            clear: Some(false),
            ..Verdict::default()
        };
        let clear = Verdict {
            warn: Some(false),
            clear: Some(true),
            ..Verdict::default()
        };
        assert_eq!(
            run(&r, &[(0, held(true)), (1, no_clear), (2, clear)]),
            ["warning", "warning", "ok"]
        );
    }

    #[test]
    fn nodata_wins_and_recovers_through_pending() {
        let r = rule("for = \"5s\"");
        let nodata = Verdict {
            nodata: true,
            ..Verdict::default()
        };
        assert_eq!(
            run(
                &r,
                &[
                    (0, held(true)),
                    (5, held(true)),
                    (6, nodata),
                    (7, held(true)),
                    (12, held(true))
                ]
            ),
            ["pending", "warning", "nodata", "pending", "warning"]
        );
    }

    #[test]
    fn flapping_is_entered_once_and_left_when_settled() {
        let r = rule("flapping = { changes = 4, window = \"100s\" }");
        let mut i = Instance::new(0);
        let mut seen = Vec::new();
        for t in 0..10 {
            if let Some(before) = i.step(&r, t, held(t % 2 == 0)) {
                seen.push((t, before.word(), i.state.word()));
            }
        }
        // ok→warning→ok→warning→ok: the fifth change makes it flapping, and it stays.
        assert_eq!(
            seen[..4],
            [
                (0, "ok", "warning"),
                (1, "warning", "ok"),
                (2, "ok", "warning"),
                (3, "warning", "ok")
            ]
        );
        assert_eq!(seen[4], (4, "ok", "flapping"));
        assert_eq!(seen.len(), 5);
        // Quiet for the window: it settles into what the condition says.
        assert_eq!(i.next_change(&r), Some(101));
        i.step(&r, 107, held(false));
        assert_eq!(i.state, State::Flapping);
        i.step(&r, 108, held(false));
        assert_eq!(i.state, State::Ok);
    }
}
