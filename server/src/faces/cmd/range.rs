//! `range KEY FROM TO [STEP]` (new): KEY over `[FROM, TO)` (Unix seconds), consolidated per
//! STEP seconds (default: about 720 steps) as `/api/range` answers it, from memory and the
//! past before it (`past::range`): `OK <time> <avg> <min> <max>` per step that holds a
//! number, oldest first, then `OK done`. What `spud get --since` asks.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::reply::Error;
use crate::past;
use crate::store::range::{Span, DEFAULT_POINTS, MAX_POINTS};

pub(super) const RANGE: Command = Command {
    word: "range",
    prefix: false,
    count: Count::Word,
    needs: Some(Role::Read),
    apply,
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    let text = String::from_utf8_lossy(args);
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (key, span) = match parse(&words) {
        Ok(parsed) => parsed,
        Err(why) => return s.reply().err(Error::BadRange(why)),
    };
    let Some(points) = past::range(&s.server, key, span) else {
        return s.reply().err(Error::NotFound);
    };
    let mut out = s.reply();
    out.begin();
    for p in points {
        let line = format!("{} {} {} {}", p.time, p.avg, p.min, p.max);
        out.ok(&[line.as_bytes()]);
    }
    out.ok(&[b"done"]);
    out.end();
}

fn parse<'a>(words: &[&'a str]) -> Result<(&'a str, Span), String> {
    let [key, from, to, rest @ ..] = words else {
        return Err("Give range KEY FROM TO [STEP], times in Unix seconds".into());
    };
    let number = |what: &str, text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("{what} {text:?} is not a whole number of seconds"))
    };
    let (from, to) = (number("FROM", from)?, number("TO", to)?);
    let step = match rest {
        [] => Span::step_for(from, to, DEFAULT_POINTS),
        [step] => number("STEP", step)?,
        _ => return Err("Give range KEY FROM TO [STEP]: too many arguments".into()),
    };
    Ok((key, Span::new(from, to, step, MAX_POINTS)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_a_key_two_times_and_a_step() {
        let (key, span) = parse(&["a.b", "100", "200", "10"]).unwrap();
        assert_eq!((key, span.from, span.to, span.step), ("a.b", 100, 200, 10));
        assert_eq!(parse(&["a.b", "0", "7200"]).unwrap().1.step, 10);
        assert!(parse(&["a.b", "100"])
            .unwrap_err()
            .contains("range KEY FROM TO"));
        assert!(parse(&["a.b", "x", "200"])
            .unwrap_err()
            .contains("FROM \"x\""));
        assert!(parse(&["a.b", "200", "100"])
            .unwrap_err()
            .contains("must come before"));
        assert!(parse(&["a.b", "1", "2", "3", "4"])
            .unwrap_err()
            .contains("too many"));
    }
}
