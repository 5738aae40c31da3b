//! Receives collectd's binary network protocol on UDP, so a collectd fleet can point its
//! `network` plugin at SPUD unchanged, with its `SecurityLevel` (`None`, `Sign`, `Encrypt`)
//! and `AuthFile`. See [`packet`] for the protocol.
//!
//! Keys are named as collectd's `write_graphite` names them, under the job:
//! `<job>.<host>.<plugin>[-<plugin instance>].<type>[-<type instance>][.<source>]`, the data
//! source's name (from types.db) added when the type has several (`load.load.shortterm`),
//! dots inside a part made `_` (`web1.example.com` → `web1_example_com`). Values as
//! types.db defines them: GAUGE as sent; DERIVE and COUNTER as per-second rates between
//! successive values (COUNTER wrapping at 32 or 64 bits); ABSOLUTE divided by the interval —
//! as `write_graphite` stores them with `StoreRates true`. Each at the value list's time.
//!
//! ```toml
//! [[job]]
//! name = "collectd"
//! plugin = "collectd"
//! interval = "10s"          # how often host.job.collectd.{received,bad,dropped} are stored
//! options = { listen = "0.0.0.0:25826", security_level = "Sign", auth_file = "/etc/spud/collectd.passwd" }
//! ```
//!
//! Options: `listen`; `allow` (the source networks taken; others are counted as
//! `refused`); beyond loopback, `allow` or a `security_level` of `Sign` or `Encrypt` is
//! required, unless `open = true` says anyone may send; `security_level` (`None`, the default, `Sign`, `Encrypt`); `auth_file`
//! (collectd's format: `user: password` per line; needed for `Sign` and `Encrypt`);
//! `typesdb` (files, default `/usr/share/collectd/types.db`); `max_keys` (counters whose
//! last value is kept for rates, default 100,000); `recv_buffer` (bytes, default 8 MiB).
//! The socket is handed over to the job's next generation on reload.

pub mod packet;
pub mod types_db;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use spud_plugin_api::kit::access::{self, Allow};
use spud_plugin_api::kit::intake::Intake;
use spud_plugin_api::kit::listen::{self, Held};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Service};

use packet::{Security, Users, Value, ValueList};
use types_db::TypesDb;

/// The collectd receiver.
pub struct Collectd;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    listen: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    open: bool,
    #[serde(default)]
    security_level: Option<String>,
    auth_file: Option<String>,
    #[serde(default = "typesdb")]
    typesdb: Vec<String>,
    #[serde(default = "max_keys")]
    max_keys: usize,
    #[serde(default = "recv_buffer")]
    recv_buffer: usize,
}

fn typesdb() -> Vec<String> {
    vec!["/usr/share/collectd/types.db".into()]
}
fn max_keys() -> usize {
    100_000
}
fn recv_buffer() -> usize {
    8 << 20
}

struct Receiver {
    socket: Held<UdpSocket>,
    allow: Allow,
    level: Security,
    users: Users,
    names: Names,
    interval: Duration,
    host: Host,
    intake: Intake,
}

impl Plugin for Collectd {
    const NAME: &'static str = "collectd";
    const DESCRIPTION: &'static str = "collectd's network protocol (plain, signed, encrypted)";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let o: Options = job.options()?;
        let level = match o
            .security_level
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("none") => Security::None,
            Some("sign") => Security::Sign,
            Some("encrypt") => Security::Encrypt,
            Some(other) => {
                return Err(format!(
                    "options: security_level {other:?} is none of None, Sign, Encrypt"
                ))
            }
        };
        let users = match &o.auth_file {
            Some(path) => read_auth_file(path)?,
            None if level != Security::None => {
                return Err(format!("options: security_level {level:?} needs auth_file"))
            }
            None => Users::new(),
        };
        let mut types = String::new();
        for path in &o.typesdb {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("options: typesdb {path:?}: {e}"))?;
            types.push_str(&text);
            types.push('\n');
        }
        let (db, bad) = TypesDb::parse(&types);
        if !bad.is_empty() {
            host.warn(format_args!(
                "typesdb: {} line(s) unreadable and left out (the first: line {})",
                bad.len(),
                bad[0]
            ));
        }
        let allow = Allow::new(&o.allow)?;
        access::receiver_guard(
            &o.listen,
            allow.is_set() || level != Security::None,
            o.open,
            "allow = [\"10.0.0.0/8\", …] or security_level = \"Sign\"",
        )?;
        let socket = listen::udp(&o.listen, &job.name, Some(o.recv_buffer))?;
        Ok(Collector::service(Receiver {
            socket,
            allow,
            level,
            users,
            names: Names::new(db, o.max_keys),
            interval: job.interval,
            intake: Intake::new(&job.name, host.clone()),
            host,
        }))
    }
}

/// collectd's `AuthFile`: `user: password` per line; blank lines and `#` comments skipped.
fn read_auth_file(path: &str) -> Result<Users, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("options: auth_file {path:?}: {e}"))?;
    let mut users = Users::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, password) = line.split_once(':').ok_or_else(|| {
            format!(
                "options: auth_file {path:?}: line {}: not `user: password`",
                i + 1
            )
        })?;
        users.insert(user.trim().to_string(), password.trim().to_string());
    }
    Ok(users)
}

impl Service for Receiver {
    fn run(&mut self) -> Result<(), Error> {
        let Receiver {
            socket,
            allow,
            level,
            users,
            names,
            interval,
            intake,
            host,
        } = self;
        let (host, intake) = (&*host, &*intake);
        std::thread::scope(|scope| {
            // The figures go out on a clock of their own: a reader idle in `recv` for a
            // while (the host keeps the socket) would hold back the last interval's.
            scope.spawn(move || {
                let (mut buf, mut lists) = (vec![0u8; 65536], Vec::new());
                while !host.stop_requested(Duration::ZERO) {
                    let Ok(Some(n)) = allow.recv(socket, &mut buf, intake) else {
                        continue;
                    };
                    lists.clear();
                    if let Err(packet::Bad(kind, detail)) =
                        packet::parse(&buf[..n], *level, users, &mut lists)
                    {
                        intake.bad(kind, detail);
                    }
                    for list in &lists {
                        store(names, host, intake, list);
                    }
                }
            });
            while !host.stop_requested(*interval) {
                intake.publish();
            }
        });
        intake.publish();
        Ok(())
    }
}

/// Stores one value list's values under their keys.
fn store(names: &mut Names, host: &Host, intake: &Intake, list: &ValueList) {
    let time = list.time as u64;
    intake.received(list.values.len() as u64);
    names.each(list, |key, stored| match stored {
        Stored::Value(v) => host.set_at(key, v, time),
        Stored::First => {}
        Stored::Full(max_keys) => intake.dropped(
            1,
            "too many counters",
            format_args!("{max_keys} counters are followed (max_keys); {key} is not"),
        ),
    });
}

/// The keys of each value list's identity, made once, and the last value of each counter
/// for its rate: a receiver meets the same few thousand identities every interval.
struct Names {
    db: TypesDb,
    lists: HashMap<String, Sources>,
    /// Counters followed, at most `max_keys`; identities kept, at most `max_keys` too.
    counters: usize,
    max_keys: usize,
    /// The identity being looked up, in a buffer of its own.
    id: String,
}

/// One identity's keys, one per value, and each counter's last value and time.
struct Sources {
    keys: Vec<String>,
    last: Vec<Option<(Value, f64)>>,
}

enum Stored {
    Value(f64),
    /// A counter's first value: a rate needs two.
    First,
    /// A new counter beyond `max_keys` (which it says).
    Full(usize),
}

impl Names {
    fn new(db: TypesDb, max_keys: usize) -> Names {
        Names {
            db,
            lists: HashMap::new(),
            counters: 0,
            max_keys,
            id: String::new(),
        }
    }

    /// Calls `f` with each value's key and what to store for it.
    fn each(&mut self, list: &ValueList, mut f: impl FnMut(&str, Stored)) {
        self.id.clear();
        for part in [
            &list.host,
            &list.plugin,
            &list.plugin_instance,
            &list.kind,
            &list.type_instance,
        ] {
            self.id.push_str(part);
            self.id.push('\0');
        }
        let count = list.values.len();
        let known = self
            .lists
            .get(self.id.as_str())
            .is_some_and(|s| s.keys.len() == count);
        if !known {
            if self.lists.len() >= self.max_keys && !self.lists.contains_key(self.id.as_str()) {
                // Past the bound: gauges are still stored, keys made each time.
                for (i, value) in list.values.iter().enumerate() {
                    let key = self.key(list, i, count);
                    f(&key, Self::value(None, &mut 0, self.max_keys, *value, list));
                }
                return;
            }
            let sources = Sources {
                keys: (0..count).map(|i| self.key(list, i, count)).collect(),
                last: vec![None; count],
            };
            if let Some(old) = self.lists.insert(self.id.clone(), sources) {
                self.counters -= old.last.iter().flatten().count();
            }
        }
        let sources = self.lists.get_mut(self.id.as_str()).expect("just made");
        for (i, value) in list.values.iter().enumerate() {
            let stored = Self::value(
                Some(&mut sources.last[i]),
                &mut self.counters,
                self.max_keys,
                *value,
                list,
            );
            f(&sources.keys[i], stored);
        }
    }

    fn key(&self, list: &ValueList, index: usize, count: usize) -> String {
        let mut key = part(&list.host);
        key.push('.');
        key.push_str(&instance(&list.plugin, &list.plugin_instance));
        key.push('.');
        key.push_str(&instance(&list.kind, &list.type_instance));
        if count > 1 {
            key.push('.');
            key.push_str(&part(&self.db.source_name(&list.kind, index, count)));
        }
        key
    }

    /// The value to store for `value`, with `last` the slot of its counter's last value
    /// (None where no slot can be kept).
    fn value(
        last: Option<&mut Option<(Value, f64)>>,
        counters: &mut usize,
        max_keys: usize,
        value: Value,
        list: &ValueList,
    ) -> Stored {
        let (time, interval) = (list.time, list.interval);
        match value {
            Value::Gauge(g) if g.is_nan() => return Stored::First,
            Value::Gauge(g) => return Stored::Value(g),
            Value::Absolute(a) => {
                return Stored::Value(a as f64 / if interval > 0.0 { interval } else { 1.0 })
            }
            Value::Counter(_) | Value::Derive(_) => {}
        }
        let Some(slot) = last else {
            return Stored::Full(max_keys);
        };
        let Some((before, then)) = slot.replace((value, time)) else {
            if *counters >= max_keys {
                *slot = None;
                return Stored::Full(max_keys);
            }
            *counters += 1;
            return Stored::First;
        };
        let seconds = time - then;
        if seconds <= 0.0 {
            return Stored::First;
        }
        let difference = match (before, value) {
            (Value::Counter(old), Value::Counter(new)) => counter_difference(old, new) as f64,
            (Value::Derive(old), Value::Derive(new)) => new.wrapping_sub(old) as f64,
            // The type changed under the same name: start again.
            _ => return Stored::First,
        };
        Stored::Value(difference / seconds)
    }
}

/// How much a COUNTER grew, over a wrap at 32 bits (if it was below 2³²) or 64.
fn counter_difference(old: u64, new: u64) -> u64 {
    if new >= old {
        new - old
    } else if old <= u64::from(u32::MAX) {
        (u64::from(u32::MAX) - old) + new + 1
    } else {
        new.wrapping_sub(old)
    }
}

/// One part of a key: characters a key cannot hold, and dots, made `_`.
fn part(text: &str) -> String {
    spud_plugin_api::key_safe(text).replace('.', "_")
}

fn instance(name: &str, instance: &str) -> String {
    if instance.is_empty() {
        part(name)
    } else {
        format!("{}-{}", part(name), part(instance))
    }
}

export_plugin!(Collectd);

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let (db, _) = TypesDb::parse("load shortterm:GAUGE:0:U, midterm:GAUGE:0:U, longterm:GAUGE:0:U\nif_octets rx:DERIVE:0:U, tx:DERIVE:0:U\n");
        Names::new(db, 2)
    }

    /// What `each` stores for one value of `instance` at `time`: Some(value), None for a
    /// first counter, Err for a counter past the bound.
    fn one(n: &mut Names, instance: &str, value: Value, time: f64) -> Result<Option<f64>, ()> {
        let list = ValueList {
            host: "h".into(),
            plugin: "p".into(),
            kind: "k".into(),
            type_instance: instance.into(),
            time,
            interval: 10.0,
            values: vec![value],
            ..Default::default()
        };
        let mut out = Vec::new();
        n.each(&list, |key, stored| {
            assert_eq!(key, format!("h.p.k-{instance}"));
            out.push(match stored {
                Stored::Value(v) => Ok(Some(v)),
                Stored::First => Ok(None),
                Stored::Full(_) => Err(()),
            })
        });
        out.pop().unwrap()
    }

    #[test]
    fn keys_as_write_graphite_names_them() {
        let n = names();
        let list = ValueList {
            host: "web1.example.com".into(),
            plugin: "load".into(),
            kind: "load".into(),
            ..Default::default()
        };
        assert_eq!(n.key(&list, 2, 3), "web1_example_com.load.load.longterm");
        let list = ValueList {
            host: "h".into(),
            plugin: "memory".into(),
            kind: "memory".into(),
            type_instance: "used".into(),
            ..Default::default()
        };
        assert_eq!(n.key(&list, 0, 1), "h.memory.memory-used");
        let list = ValueList {
            host: "h".into(),
            plugin: "interface".into(),
            plugin_instance: "eth0".into(),
            kind: "if_octets".into(),
            ..Default::default()
        };
        assert_eq!(n.key(&list, 1, 2), "h.interface-eth0.if_octets.tx");
    }

    #[test]
    fn rates_wraps_and_bounds() {
        let mut n = names();
        assert_eq!(one(&mut n, "d", Value::Derive(100), 10.0), Ok(None));
        assert_eq!(one(&mut n, "d", Value::Derive(50), 20.0), Ok(Some(-5.0)));
        let almost = u64::from(u32::MAX) - 9;
        assert_eq!(one(&mut n, "c", Value::Counter(almost), 0.0), Ok(None));
        assert_eq!(one(&mut n, "c", Value::Counter(10), 10.0), Ok(Some(2.0)));
        // Two counters are followed already (max_keys 2).
        assert_eq!(one(&mut n, "e", Value::Counter(1), 0.0), Err(()));
        assert_eq!(one(&mut n, "a", Value::Absolute(30), 0.0), Ok(Some(3.0)));
        // Identities past the bound: gauges still stored.
        assert_eq!(one(&mut n, "g", Value::Gauge(0.5), 0.0), Ok(Some(0.5)));
    }
}
