//! `spud rules check RULES` and `spud rules test RULES TESTS`: alert rules checked, and
//! replayed against series in a test file, before they page anyone. For CI: exit 0 when
//! all is well, 1 when a test fails, 2 when a file is malformed.

use std::path::PathBuf;

use clap::Subcommand;
use spud_server::alerts::{replay, rules::RuleSet};

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Check a rules file: every problem, with file, line and field.
    Check { rules: PathBuf },
    /// Replay the series of a test file through the rules, checking the states expected
    /// at given times (see docs/alerts.md).
    Test { rules: PathBuf, tests: PathBuf },
}

pub fn run(command: RulesCommand) -> i32 {
    match command {
        RulesCommand::Check { rules } => match RuleSet::load(&rules) {
            Ok(set) => {
                crate::out::lines([format!(
                    "{}: {} rules, {} receivers: ok",
                    rules.display(),
                    set.rules.len(),
                    set.receivers.len()
                )]);
                0
            }
            Err(e) => {
                e.problems.iter().for_each(|p| eprintln!("{p}"));
                2
            }
        },
        RulesCommand::Test { rules, tests } => match replay::run(&rules, &tests) {
            Ok(outcome) => {
                let mut lines: Vec<String> = outcome
                    .failures
                    .iter()
                    .map(|f| format!("FAIL {f}"))
                    .collect();
                lines.push(format!(
                    "{}: {} passed, {} failed",
                    tests.display(),
                    outcome.passed,
                    outcome.failures.len()
                ));
                crate::out::lines(lines);
                i32::from(!outcome.failures.is_empty())
            }
            Err(problems) => {
                problems.iter().for_each(|p| eprintln!("{p}"));
                2
            }
        },
    }
}
