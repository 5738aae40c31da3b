//! collectd's binary network protocol (its `network` plugin, protocol version 5): a packet is
//! a run of parts, each `type: u16, length: u16` (big-endian, the length counting the four
//! header bytes) and a body. String parts (host, plugin, plugin instance, type, type
//! instance) and time parts set the identifier the next values part is filed under.
//!
//! Security, as collectd's `SecurityLevel`: a signature part (HMAC-SHA-256 of the user name
//! and the rest of the packet, keyed with the user's password) vouches for what follows it;
//! an encryption part holds a whole packet, AES-256 in OFB mode under SHA-256(password), its
//! SHA-1 in front. `None` takes everything (checking what it can), `Sign` takes only signed
//! or encrypted values, `Encrypt` only encrypted ones.

use std::collections::HashMap;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const HOST: u16 = 0x0000;
const TIME: u16 = 0x0001;
const PLUGIN: u16 = 0x0002;
const PLUGIN_INSTANCE: u16 = 0x0003;
const TYPE: u16 = 0x0004;
const TYPE_INSTANCE: u16 = 0x0005;
const VALUES: u16 = 0x0006;
const INTERVAL: u16 = 0x0007;
const TIME_HR: u16 = 0x0008;
const INTERVAL_HR: u16 = 0x0009;
const SIGNATURE: u16 = 0x0200;
const ENCRYPTION: u16 = 0x0210;

/// What a listener accepts (collectd's `SecurityLevel`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Security {
    /// Everything; signatures are checked when the user is known.
    None,
    /// Only values under a valid signature, or encrypted.
    Sign,
    /// Only encrypted values.
    Encrypt,
}

/// One value as the packet carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A counter that wraps (32 or 64 bits).
    Counter(u64),
    /// A value as it is.
    Gauge(f64),
    /// A counter that may go down (a signed difference).
    Derive(i64),
    /// A count since the last report, reset on reading.
    Absolute(u64),
}

/// One value list: an identifier, its time and interval, its values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueList {
    /// The host it describes.
    pub host: String,
    /// The plugin that read it (`load`, `memory`).
    pub plugin: String,
    /// The plugin's instance (`eth0`), possibly empty.
    pub plugin_instance: String,
    /// The type from types.db (`load`, `memory`, `if_octets`).
    pub kind: String,
    /// The type's instance (`used`, `free`), possibly empty.
    pub type_instance: String,
    /// When, in Unix seconds.
    pub time: f64,
    /// The sender's interval, in seconds.
    pub interval: f64,
    /// Its values, in types.db's order.
    pub values: Vec<Value>,
}

/// Why (part of) a packet was refused: a kind for the log and the detail.
#[derive(Debug, PartialEq)]
pub struct Bad(pub &'static str, pub String);

/// Users and their passwords (collectd's `AuthFile`).
pub type Users = HashMap<String, String>;

/// The value lists of `packet` that `level` accepts, into `out`. On a malformed or refused
/// part, what came before it is kept and the rest of the packet is not read.
pub fn parse(
    packet: &[u8],
    level: Security,
    users: &Users,
    out: &mut Vec<ValueList>,
) -> Result<(), Bad> {
    read(packet, level, users, Trust::Plain, out)
}

/// How far the parts being read are vouched for, least first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trust {
    Plain,
    Signed,
    Encrypted,
}

fn read(
    mut bytes: &[u8],
    level: Security,
    users: &Users,
    mut trust: Trust,
    out: &mut Vec<ValueList>,
) -> Result<(), Bad> {
    let mut current = ValueList::default();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return Err(Bad(
                "truncated packet",
                format!("{} bytes left, a part header is 4", bytes.len()),
            ));
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        if len < 4 || len > bytes.len() {
            return Err(Bad(
                "truncated packet",
                format!(
                    "part 0x{kind:04x} claims {len} bytes, {} are left",
                    bytes.len()
                ),
            ));
        }
        let body = &bytes[4..len];
        let rest = &bytes[len..];
        match kind {
            HOST => current.host = string(body)?,
            PLUGIN => current.plugin = string(body)?,
            PLUGIN_INSTANCE => current.plugin_instance = string(body)?,
            TYPE => current.kind = string(body)?,
            TYPE_INSTANCE => current.type_instance = string(body)?,
            TIME => current.time = number(body)? as f64,
            TIME_HR => current.time = number(body)? as f64 / (1u64 << 30) as f64,
            INTERVAL => current.interval = number(body)? as f64,
            INTERVAL_HR => current.interval = number(body)? as f64 / (1u64 << 30) as f64,
            VALUES => {
                let accepted = match level {
                    Security::None => true,
                    Security::Sign => trust != Trust::Plain,
                    Security::Encrypt => trust == Trust::Encrypted,
                };
                if !accepted {
                    let what = if level == Security::Sign {
                        "unsigned"
                    } else {
                        "unencrypted"
                    };
                    return Err(Bad(
                        if level == Security::Sign {
                            "unsigned values refused"
                        } else {
                            "unencrypted values refused"
                        },
                        format!(
                            "{what} values for {}/{} (SecurityLevel {level:?})",
                            current.host, current.plugin
                        ),
                    ));
                }
                current.values = values(body)?;
                out.push(current.clone());
            }
            // A signature that does not vouch (unknown signer under `None`) changes nothing.
            SIGNATURE if verify(body, rest, users, level)? => trust = trust.max(Trust::Signed),
            ENCRYPTION => {
                let plain = decrypt(body, users)?;
                read(&plain, level, users, Trust::Encrypted, out)?;
            }
            _ => {} // notifications and parts of later versions: not values
        }
        bytes = rest;
    }
    Ok(())
}

fn string(body: &[u8]) -> Result<String, Bad> {
    let text = body.strip_suffix(&[0]).ok_or_else(|| {
        Bad(
            "malformed part",
            "a string part without its terminating NUL".into(),
        )
    })?;
    String::from_utf8(text.to_vec()).map_err(|_| {
        Bad(
            "malformed part",
            format!(
                "a string part is not UTF-8: {:?}",
                String::from_utf8_lossy(text)
            ),
        )
    })
}

fn number(body: &[u8]) -> Result<u64, Bad> {
    let bytes: [u8; 8] = body.try_into().map_err(|_| {
        Bad(
            "malformed part",
            format!("a number part of {} bytes, not 8", body.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn values(body: &[u8]) -> Result<Vec<Value>, Bad> {
    let malformed = |why: String| Bad("malformed part", why);
    if body.len() < 2 {
        return Err(malformed("a values part without its count".into()));
    }
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    if body.len() != 2 + 9 * n {
        return Err(malformed(format!(
            "a values part for {n} values is {} bytes, not {}",
            body.len() + 4,
            6 + 9 * n
        )));
    }
    let (kinds, data) = body[2..].split_at(n);
    kinds
        .iter()
        .zip(data.chunks_exact(8))
        .map(|(&kind, raw)| {
            let raw: [u8; 8] = raw.try_into().expect("chunks of 8");
            Ok(match kind {
                0 => Value::Counter(u64::from_be_bytes(raw)),
                // Gauges travel in the sender's byte order: x86, as collectd assumes.
                1 => Value::Gauge(f64::from_le_bytes(raw)),
                2 => Value::Derive(i64::from_be_bytes(raw)),
                3 => Value::Absolute(u64::from_be_bytes(raw)),
                k => return Err(malformed(format!("value kind {k} is none of 0–3"))),
            })
        })
        .collect()
}

/// Checks a signature part; true when it holds. An unknown user is an error under `Sign`
/// and `Encrypt`, and no vouching under `None` (the values are taken as plain).
fn verify(body: &[u8], rest: &[u8], users: &Users, level: Security) -> Result<bool, Bad> {
    if body.len() < 32 {
        return Err(Bad(
            "malformed part",
            "a signature part shorter than its hash".into(),
        ));
    }
    let (hash, user) = body.split_at(32);
    let user = String::from_utf8_lossy(user);
    let Some(password) = users.get(user.as_ref()) else {
        return match level {
            Security::None => Ok(false),
            _ => Err(Bad(
                "unknown user",
                format!("signed by {user:?}, who is not in the auth file"),
            )),
        };
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(password.as_bytes()).expect("HMAC takes any key");
    mac.update(user.as_bytes());
    mac.update(rest);
    mac.verify_slice(hash)
        .map(|()| true)
        .map_err(|_| Bad("bad signature", format!("the signature of {user:?} does not match (wrong password, or the packet was altered)")))
}

/// The packet inside an encryption part.
fn decrypt(body: &[u8], users: &Users) -> Result<Vec<u8>, Bad> {
    let malformed = |why: &str| Bad("malformed part", why.to_string());
    if body.len() < 2 {
        return Err(malformed("an encryption part without its user name"));
    }
    let user_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let body = &body[2..];
    if body.len() < user_len + 16 + 20 {
        return Err(malformed("an encryption part shorter than its header"));
    }
    let user = String::from_utf8_lossy(&body[..user_len]);
    let iv = &body[user_len..user_len + 16];
    let mut data = body[user_len + 16..].to_vec();
    let password = users.get(user.as_ref()).ok_or_else(|| {
        Bad(
            "unknown user",
            format!("encrypted for {user:?}, who is not in the auth file"),
        )
    })?;
    let key = Sha256::digest(password.as_bytes());
    let mut cipher = ofb::Ofb::<aes::Aes256>::new(&key, iv.into());
    cipher.apply_keystream(&mut data);
    let (checksum, plain) = data.split_at(20);
    if Sha1::digest(plain).as_slice() != checksum {
        return Err(Bad(
            "bad checksum",
            format!("a packet encrypted for {user:?} does not decrypt (wrong password?)"),
        ));
    }
    Ok(plain.to_vec())
}

/// Builds packets as collectd's `network` plugin does: for tests and benchmarks.
pub mod build {
    use super::*;

    /// A part.
    pub fn part(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(4 + body.len());
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    /// A string part.
    pub fn text(kind: u16, s: &str) -> Vec<u8> {
        let mut body = s.as_bytes().to_vec();
        body.push(0);
        part(kind, &body)
    }

    /// A value list with its identifier, time (high resolution) and interval.
    pub fn value_list(
        host: &str,
        plugin: &str,
        plugin_instance: &str,
        kind: &str,
        type_instance: &str,
        time: f64,
        values: &[Value],
    ) -> Vec<u8> {
        let mut p = text(HOST, host);
        p.extend(part(
            TIME_HR,
            &((time * (1u64 << 30) as f64) as u64).to_be_bytes(),
        ));
        p.extend(part(INTERVAL, &10u64.to_be_bytes()));
        p.extend(text(PLUGIN, plugin));
        if !plugin_instance.is_empty() {
            p.extend(text(PLUGIN_INSTANCE, plugin_instance));
        }
        p.extend(text(TYPE, kind));
        if !type_instance.is_empty() {
            p.extend(text(TYPE_INSTANCE, type_instance));
        }
        let mut body = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            body.push(match v {
                Value::Counter(_) => 0,
                Value::Gauge(_) => 1,
                Value::Derive(_) => 2,
                Value::Absolute(_) => 3,
            });
        }
        for v in values {
            body.extend_from_slice(&match *v {
                Value::Counter(c) | Value::Absolute(c) => c.to_be_bytes(),
                Value::Gauge(g) => g.to_le_bytes(),
                Value::Derive(d) => d.to_be_bytes(),
            });
        }
        p.extend(part(VALUES, &body));
        p
    }

    /// `payload` signed by `user`.
    pub fn signed(payload: &[u8], user: &str, password: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(password.as_bytes()).expect("any key");
        mac.update(user.as_bytes());
        mac.update(payload);
        let mut body = mac.finalize().into_bytes().to_vec();
        body.extend_from_slice(user.as_bytes());
        let mut p = part(SIGNATURE, &body);
        p.extend_from_slice(payload);
        p
    }

    /// `payload` encrypted for `user`, with the IV given.
    pub fn encrypted(payload: &[u8], user: &str, password: &str, iv: [u8; 16]) -> Vec<u8> {
        let mut data = Sha1::digest(payload).to_vec();
        data.extend_from_slice(payload);
        let key = Sha256::digest(password.as_bytes());
        ofb::Ofb::<aes::Aes256>::new(&key, (&iv).into()).apply_keystream(&mut data);
        let mut body = (user.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(user.as_bytes());
        body.extend_from_slice(&iv);
        body.extend(data);
        part(ENCRYPTION, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn users() -> Users {
        [("alice".to_string(), "s3cret".to_string())].into()
    }

    fn load() -> Vec<u8> {
        value_list(
            "web1",
            "load",
            "",
            "load",
            "",
            1_700_000_000.5,
            &[Value::Gauge(0.25), Value::Gauge(0.5), Value::Gauge(1.0)],
        )
    }

    fn run(packet: &[u8], level: Security) -> (Vec<ValueList>, Option<&'static str>) {
        let mut out = Vec::new();
        let e = parse(packet, level, &users(), &mut out).err().map(|b| b.0);
        (out, e)
    }

    #[test]
    fn plain_values() {
        let mut packet = load();
        packet.extend(value_list(
            "web1",
            "interface",
            "eth0",
            "if_octets",
            "",
            1.0,
            &[Value::Derive(-5), Value::Counter(7)],
        ));
        let (lists, e) = run(&packet, Security::None);
        assert_eq!(e, None);
        assert_eq!(lists.len(), 2);
        assert_eq!(
            lists[0].values,
            vec![Value::Gauge(0.25), Value::Gauge(0.5), Value::Gauge(1.0)]
        );
        assert_eq!(lists[0].time, 1_700_000_000.5);
        assert_eq!(lists[0].interval, 10.0);
        assert_eq!(
            (lists[1].plugin_instance.as_str(), lists[1].values[0]),
            ("eth0", Value::Derive(-5))
        );
    }

    #[test]
    fn signatures_by_level() {
        let signed_packet = signed(&load(), "alice", "s3cret");
        for level in [Security::None, Security::Sign] {
            assert_eq!(run(&signed_packet, level).0.len(), 1, "{level:?}");
        }
        assert_eq!(
            run(&signed_packet, Security::Encrypt).1,
            Some("unencrypted values refused")
        );
        assert_eq!(
            run(&load(), Security::Sign).1,
            Some("unsigned values refused")
        );
        let forged = signed(&load(), "alice", "guess");
        assert_eq!(run(&forged, Security::Sign).1, Some("bad signature"));
        let mut altered = signed_packet.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(run(&altered, Security::None).1, Some("bad signature"));
        assert_eq!(
            run(&signed(&load(), "mallory", "x"), Security::Sign).1,
            Some("unknown user")
        );
        // Under None an unknown signer's values are taken as plain ones.
        assert_eq!(
            run(&signed(&load(), "mallory", "x"), Security::None)
                .0
                .len(),
            1
        );
    }

    #[test]
    fn encryption() {
        let packet = encrypted(&load(), "alice", "s3cret", [7; 16]);
        for level in [Security::None, Security::Sign, Security::Encrypt] {
            let (lists, e) = run(&packet, level);
            assert_eq!((lists.len(), e), (1, None), "{level:?}");
        }
        assert_eq!(
            run(
                &encrypted(&load(), "alice", "wrong", [7; 16]),
                Security::Encrypt
            )
            .1,
            Some("bad checksum")
        );
    }

    #[test]
    fn truncated_and_malformed() {
        let packet = load();
        for cut in [1, 3, 10, packet.len() - 1] {
            let (_, e) = run(&packet[..cut], Security::None);
            assert!(e.is_some(), "cut at {cut}");
        }
        let mut bad_kind = part(VALUES, &[0, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0]);
        bad_kind.splice(0..0, text(HOST, "h"));
        assert_eq!(run(&bad_kind, Security::None).1, Some("malformed part"));
        assert_eq!(
            run(&part(HOST, b"no-nul"), Security::None).1,
            Some("malformed part")
        );
        // Values before the bad part are kept.
        let mut two = load();
        two.extend_from_slice(&[0, 6, 0, 200]);
        let (lists, e) = run(&two, Security::None);
        assert_eq!((lists.len(), e), (1, Some("truncated packet")));
    }
}
