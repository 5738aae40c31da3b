//! The same scripted sessions, sent to the original 2004 Perl server (extracted from seed
//! `000_*`, run unmodified) and to `spud-server`; every reply compared byte for byte.
//!
//! Each step sends lines on one connection, then a sync request whose answer is unique
//! (`get zzsync`, the key's history growing by one each time), so that both servers have
//! finished the step before the next begins. Only what cannot be equal is normalised:
//! times within a minute of now, the uptime clock, the opaque client tokens of `list`, and
//! the count of reads (`server.clients.event_reads`), which depends on how TCP cut the bytes.

use std::net::SocketAddr;
use std::time::Duration;

use spud_tests::{Client, OriginalServer, SpudServer};

const T: Duration = Duration::from_secs(20);

/// One step: which connection, and what it sends.
type Step = (usize, &'static str);

struct Run {
    clients: Vec<Client>,
    streams: Vec<Vec<u8>>,
    syncs: usize,
}

impl Run {
    fn new(addr: SocketAddr, connections: usize) -> Run {
        Run {
            clients: (0..connections).map(|_| Client::connect(addr)).collect(),
            streams: vec![Vec::new(); connections],
            syncs: 0,
        }
    }

    fn step(&mut self, (conn, text): Step) {
        self.syncs += 1;
        let marker = format!("zz{}", self.syncs);
        let c = &mut self.clients[conn];
        c.send(format!(
            "{}qset 1 zzsync {marker}\r\nget zzsync\r\n",
            text.replace('\n', "\r\n")
        ));
        let expect = format!("OK 1 1 {marker}\r\n");
        let got = c.read_until(T, |b| {
            b.windows(expect.len()).any(|w| w == expect.as_bytes()) && b.ends_with(b"OK done\r\n")
        });
        self.streams[conn].extend_from_slice(&got);
    }

    fn finish(mut self) -> Vec<String> {
        for (c, stream) in self.clients.iter_mut().zip(&mut self.streams) {
            c.send("quit\r\n");
            stream.extend_from_slice(&c.read_to_close(T));
        }
        self.streams.iter().map(|s| normalise(s)).collect()
    }
}

fn normalise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let now = spud_server_now();
    let times = regex::Regex::new(r"\b1\d{9}\b").unwrap();
    let text = times.replace_all(&text, |c: &regex::Captures| {
        let t: u64 = c[0].parse().unwrap();
        if t.abs_diff(now) < 60 {
            "<now>".to_string()
        } else {
            c[0].to_string()
        }
    });
    let uptime = regex::Regex::new(r"up \d+ days \d\d:\d\d:\d\d").unwrap();
    let text = uptime.replace_all(&text, "up <uptime>");
    // How many reads a request took depends on how TCP cut it up.
    let reads = regex::Regex::new(r"(OK server\.clients\.event_reads \S+) \d+").unwrap();
    let text = reads.replace_all(&text, "$1 <reads>");
    let clients = regex::Regex::new(r"(?m)^OK (Client=HASH\(0x[0-9a-f]+\)|\S+#\d+) ").unwrap();
    clients.replace_all(&text, "OK <client> ").into_owned()
}

fn spud_server_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The original server; None (the test recorded as skipped) only where the seeds are not
/// beside the checkout. Seeds present but the original not starting is a failure.
fn original_or_skip(test: &str) -> Option<OriginalServer> {
    if let Err(why) = spud_tests::original_source("src/spud/bin/server") {
        spud_tests::skip(test, &why);
        return None;
    }
    Some(OriginalServer::start().unwrap_or_else(|why| panic!("the original server: {why}")))
}

/// Runs `steps` against both servers and compares every connection's whole stream.
fn compare(test: &str, connections: usize, steps: &[Step]) {
    let Some(original) = original_or_skip(test) else {
        return;
    };
    let ours = SpudServer::start(&[]);
    // The original's readiness probe counted as a client; make ours count one too.
    drop(ours.connect());

    let mut theirs_run = Run::new(original.addr, connections);
    let mut ours_run = Run::new(ours.addr, connections);
    for step in steps {
        theirs_run.step(*step);
        ours_run.step(*step);
    }
    let theirs = theirs_run.finish();
    let mine = ours_run.finish();
    for (i, (t, m)) in theirs.iter().zip(&mine).enumerate() {
        if t != m {
            let diff: Vec<String> = t
                .lines()
                .zip(m.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .map(|(n, (a, b))| format!("line {n}:\n  original: {a:?}\n  spud:     {b:?}"))
                .collect();
            panic!(
                "connection {i} differs from the original:\n{}\n--- original ---\n{t}\n--- spud ---\n{m}",
                diff.join("\n")
            );
        }
    }
}

#[test]
fn set_get_and_errors() {
    compare(
        "set_get_and_errors",
        1,
        &[
            (
                0,
                "set 100 foo bar\nset foo  \nset 123 foo\nset 007 seven 7\n",
            ),
            (0, "get foo\nget 123\nget seven\n"),
            (
                0,
                "SET 200 Mixed.Case v a l u e  \nget Mixed.Case\nget mixed.case\n",
            ),
            (
                0,
                "set\nset onlykey\nset /bad value\nqset x\nqset 5 q.k quiet\nget q.k\n",
            ),
            (0, "get\nget 0\nget nothing\nget foo \nget*o*\n"),
            (
                0,
                "bogus\n get foo\n\r\nquickset on\nquickset off\nquickset x\nquickset ON\n",
            ),
            (0, "set 1 sp  a  b  \nset 2 tab\t\tx\nget sp\nget tab\n"),
        ],
    );
}

#[test]
fn history_and_patterns() {
    let mut fill = String::new();
    for i in 0..130 {
        fill.push_str(&format!("qset {} hist.k {i}\n", 5000 - i));
    }
    let fill: &'static str = fill.leak();
    compare(
        "history_and_patterns",
        1,
        &[
            (0, fill),
            (0, "get hist.k\n"),
            (
                0,
                "qset 1 mem.a.items 1\nqset 2 mem.b.items 2\nqset 3 aab 3\nqset 4 Zed 4\n",
            ),
            (
                0,
                "get mem.*.items\nget *a+b\nget a+b.*\nget *ZED\nget nomatch.*\n",
            ),
            (0, "get .\nget *\n"),
        ],
    );
}

#[test]
fn subscriptions_lists_and_uptime() {
    compare(
        "subscriptions_lists_and_uptime",
        3,
        &[
            (0, "set 10 web.hits 1\n"),
            (1, "sub web.*\nsubscribe *.errors\nsub web.*\nSUB other\n"),
            (
                0,
                "set 11 web.hits 2\nset 12 db.errors 3\nset 13 db.hits 4\nqset 14 WEB.x 5\n",
            ),
            (1, "list\n"),
            (2, "sub db.*\nlistall\n"),
            (1, "set 15 web.own 6\nget web.own\n"),
            (2, "list\nuptime\n"),
            (0, "sub 0\nsub\nuptime\n"),
        ],
    );
}

#[test]
fn a_fresh_servers_first_listing() {
    compare(
        "a_fresh_servers_first_listing",
        1,
        &[(0, "sub foo\nset 1 a.key 1\nget *\nuptime\nget *\n")],
    );
}

#[test]
fn the_servers_own_counters() {
    compare(
        "the_servers_own_counters",
        2,
        &[
            (0, "set 1 a 1\nget a\nbogus\n"),
            (1, "get server.com_get\n"),
            (
                0,
                "get server.com_get\nget server.com_set\nget server.clients.total\n",
            ),
            (1, "uptime\nget server.com_uptime\n"),
        ],
    );
}

/// Where PROTOCOL.md says we deliberately differ, the original is the witness: the same
/// session shows its defect there and the fix here.
#[test]
fn the_original_defects_show_there_and_not_here() {
    let Some(original) = original_or_skip("the_original_defects_show_there_and_not_here") else {
        return;
    };
    let ours = SpudServer::start(&[]);
    for (addr, is_original) in [(original.addr, true), (ours.addr, false)] {
        // 2. Overlapping subscriptions made before the key existed.
        let mut run = Run::new(addr, 2);
        run.step((0, "sub dup.*\nsub *key\n"));
        run.step((1, "set 9 dup.key v\n"));
        // 4. A closed connection's subscriptions.
        let mut gone = Client::connect(addr);
        gone.send("sub gone.pattern\r\n");
        gone.read_until_suffix(b"\r\n", T);
        drop(gone);
        std::thread::sleep(Duration::from_millis(300));
        run.step((1, "listall\n"));
        // 3. Lines after quit, in the same write.
        let mut quitter = Client::connect(addr);
        quitter.send("quit\r\nset 1 afterquit 1\r\n");
        quitter.read_to_close(T);
        std::thread::sleep(Duration::from_millis(300));
        run.step((1, "get afterquit\n"));
        let streams = run.finish();

        let pushes = streams[0].matches("SET 9 dup.key v").count();
        let lingering = streams[1].contains("gone\\.pattern");
        let ran_after_quit = streams[1].contains("OK 1 1 1\r\n");
        if is_original {
            assert_eq!(pushes, 2, "the original pushes twice:\n{}", streams[0]);
            assert!(
                lingering,
                "the original keeps a closed client's subscriptions"
            );
            assert!(ran_after_quit, "the original runs lines after quit");
        } else {
            assert_eq!(pushes, 1, "{}", streams[0]);
            assert!(!lingering, "{}", streams[1]);
            assert!(!ran_after_quit, "{}", streams[1]);
        }
    }
}
