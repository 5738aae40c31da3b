//! PROTOCOL.md, section by section, against the real `spud-server` binary over TCP.

use std::time::Duration;

use spud_tests::{Client, SpudServer};

const T: Duration = Duration::from_secs(20);

fn lines(reply: &str) -> Vec<&str> {
    reply.split_terminator("\r\n").collect()
}

// ---- Framing ----

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!("set {} k{i} v{i}\r\nget k{i}\n", 1000 + i));
    }
    c.send(&batch);
    let got = c.read_until(T, |b| b.windows(4).filter(|w| w == b"done").count() == 500);
    let got = String::from_utf8(got).unwrap();
    let expected: String = (0..500)
        .map(|i| format!("OK \r\nOK 1 {} v{i}\r\nOK done\r\n", 1000 + i))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_request_may_arrive_over_many_writes() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    for b in b"set 5 split.key a value\r\nget split.key\n" {
        c.send([*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        c.read_until_suffix(b"OK done\r\n", T),
        b"OK \r\nOK 1 5 a value\r\nOK done\r\n"
    );
}

#[test]
fn command_words_and_arguments() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.ask("SeT 9 Foo.bar x", "\r\n"), "OK \r\n");
    // `get*foo` means `get *foo`.
    assert_eq!(
        c.ask("GET*bar", "OK done\r\n"),
        "OK Foo.bar 9 x\r\nOK done\r\n"
    );
    // A leading blank is not a command word.
    assert_eq!(
        c.ask(" get Foo.bar", "\r\n"),
        "ERR unknown_command Unknown server command\r\n"
    );
    // Keys are case-sensitive.
    assert_eq!(
        c.ask("get foo", "\r\n"),
        "ERR not_found Information not in record\r\n"
    );
}

// ---- Replies and errors ----

#[test]
fn every_error_of_the_original() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let cases = [
        ("bogus", "ERR unknown_command Unknown server command"),
        ("get nothing", "ERR not_found Information not in record"),
        ("get", "ERR no_args No arguments provided"),
        ("sub", "ERR no_args No arguments provided"),
        ("set onlykey", "ERR need_two_args Two arguments needed"),
        ("set /x y", "ERR need_two_args Two arguments needed"),
        ("qset k", "ERR need_two_args Two arguments needed"),
        (
            "quickset maybe",
            "ERR not_on_or_off Argument wasn't of form 'on' or 'off'",
        ),
        (
            "quickset ON",
            "ERR not_on_or_off Argument wasn't of form 'on' or 'off'",
        ),
    ];
    for (request, reply) in cases {
        assert_eq!(c.ask(request, "\r\n"), format!("{reply}\r\n"), "{request}");
    }
}

// ---- set / qset ----

#[test]
fn set_times_keys_and_verbatim_values() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("set 007 k v\r\nset 123 foo\r\nset sp   two  words  \r\nset blank  \r\n");
    assert_eq!(
        c.read_until_suffix(b"OK \r\nOK \r\nOK \r\nOK \r\n", T)
            .len(),
        20
    );
    assert_eq!(c.get("k"), ["OK 1 7 v"]);
    // `123` is the key when no value follows the would-be key.
    let h = c.get("123");
    assert_eq!(h.len(), 1);
    assert!(h[0].ends_with(" foo"), "{h:?}");
    let h = c.get("sp");
    assert!(h[0].ends_with(" two  words  "), "{h:?}");
    // Only blanks after the key: the last blank is the value, as in the original.
    let h = c.get("blank");
    assert!(h[0].ends_with("  "), "{h:?}");
}

#[test]
fn history_is_the_newest_100_in_insertion_order() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..150 {
        // Times go backwards: history stays in insertion order.
        batch.push_str(&format!("qset {} h {i}\r\n", 10_000 - i));
    }
    c.send(&batch);
    let h = c.get("h");
    assert_eq!(h.len(), 100);
    assert_eq!(h[0], "OK 1 9851 149");
    assert_eq!(h[99], "OK 100 9950 50");
}

#[test]
fn qset_is_silent_but_errors_are_not() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("qset q 1\r\nqset bad\r\nget q\r\n");
    let got = String::from_utf8(c.read_until_suffix(b"OK done\r\n", T)).unwrap();
    let got = lines(&got);
    assert_eq!(got[0], "ERR need_two_args Two arguments needed");
    assert!(got[1].starts_with("OK 1 ") && got[1].ends_with(" 1"));
}

#[test]
fn values_of_64_kib_round_trip() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let value: String = (0..65536)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    c.send(format!("set 1 big {value}\r\n"));
    assert_eq!(c.read_until_suffix(b"OK \r\n", T), b"OK \r\n");
    let reply = c.ask("get big", "OK done\r\n");
    assert_eq!(reply, format!("OK 1 1 {value}\r\nOK done\r\n"));
}

// ---- get and patterns ----

#[test]
fn get_patterns() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("qset 1 mem.a.items 1\r\nqset 2 mem.b.items 2\r\nqset 3 mem.b.items 3\r\nqset 4 memXaXitems 4\r\nqset 5 aab 5\r\nqset 6 Zed 6\r\n");
    assert_eq!(
        c.get("mem.*.items"),
        ["OK mem.a.items 1 1", "OK mem.b.items 3 3"]
    );
    // Regular-expression meaning is kept: `a+b` matches `aab`; unanchored; case-insensitive.
    let got = c.get("a+b.*");
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(c.get("*a+b"), ["OK aab 5 5"]);
    assert_eq!(c.get("*zED"), ["OK Zed 6 6"]);
    // No match: just OK done.
    assert!(c.get("nothing.*").is_empty());
    // The argument is not trimmed.
    assert_eq!(
        c.ask("get aab ", "\r\n"),
        "ERR not_found Information not in record\r\n"
    );
    assert_eq!(
        c.ask("get 0", "\r\n"),
        "ERR no_args No arguments provided\r\n"
    );
    assert_eq!(
        c.ask("sub 0", "\r\n"),
        "ERR no_args No arguments provided\r\n"
    );
}

// ---- sub, list, listall ----

#[test]
fn subscriptions_push_sets() {
    let server = SpudServer::start(&[]);
    let mut setter = server.connect();
    setter.ask("set 1 web.hits 10", "\r\n");
    let mut sub = server.connect();
    assert_eq!(sub.ask("subscribe web.*", "\r\n"), "OK web\\..*\r\n");
    // Keys that existed before the subscription are pushed too.
    setter.ask("set 2 web.hits 11", "\r\n");
    setter.ask("set 3 db.hits 1", "\r\n");
    setter.ask("set 4 WEB.errors 0", "\r\n");
    assert_eq!(
        sub.read_until_suffix(b"SET 4 WEB.errors 0\r\n", T),
        b"SET 2 web.hits 11\r\nSET 4 WEB.errors 0\r\n"
    );
    // A subscribed connection still takes commands, and sees its own push before its OK.
    assert_eq!(
        sub.ask("set 5 web.own yes", "OK \r\n"),
        "SET 5 web.own yes\r\nOK \r\n"
    );
}

#[test]
fn same_pattern_twice_is_answered_twice_and_kept_once() {
    let server = SpudServer::start(&[]);
    let mut a = server.connect();
    let mut b = server.connect();
    a.ask("sub x.*", "\r\n");
    assert_eq!(a.ask("sub x.*", "\r\n"), "OK x\\..*\r\n");
    a.ask("sub *y", "\r\n");
    b.ask("sub zzz", "\r\n");
    let mine = a.get_list("list");
    assert_eq!(mine.len(), 2);
    assert!(
        mine[0].ends_with(" x\\..*") && mine[1].ends_with(" .*y"),
        "{mine:?}"
    );
    let all = a.get_list("listall");
    assert_eq!(all.len(), 3);
    assert!(all[2].ends_with(" zzz"));
    // The client token has no blanks.
    assert!(all.iter().all(|l| l.split(' ').count() == 3), "{all:?}");
}

#[test]
fn uptime_reports_subscriptions_and_keys() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("sub foo\r\nset 1 a.key 1\r\n");
    // The first two lines are the answers to `sub` and `set`.
    let keys_before = c.get("*").len() - 2;
    let got = c.ask("uptime", "OK done\r\n");
    let got = lines(&got);
    let re = regex::Regex::new(r"^OK stats-server up 0 days 00:00:\d\d$").unwrap();
    assert!(re.is_match(got[0]), "{got:?}");
    let re = regex::Regex::new(r"^OK 1 subscriptions, (\d+) total keys$").unwrap();
    let keys: usize = re.captures(got[1]).expect("count line")[1].parse().unwrap();
    // Every key, counters included: those `get *` listed, `server.com_uptime`, and
    // `server.lines.end_outputs`, first counted when that `get *` reply ended.
    assert_eq!(keys, keys_before + 2);
    assert_eq!(got[2], "OK done");
}

#[test]
fn quickset_is_accepted_silently() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("quickset on\r\nquickset off\r\nset 1 q 1\r\n");
    assert_eq!(c.read_until_suffix(b"\r\n", T), b"OK \r\n");
}

#[test]
fn quit_closes_without_a_word() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("set 1 a 1\r\nquit\r\n");
    assert_eq!(c.read_to_close(T), b"OK \r\n");
}

#[test]
fn shutdown_stops_the_server_cleanly() {
    let mut server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("shutdown\r\n");
    assert_eq!(c.read_to_close(T), b"");
    let status = server.process.wait(T).expect("exits");
    assert!(status.success(), "{status:?}");
}

// ---- The server's own counters ----

#[test]
fn counters_are_keys_with_history() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let mut sub = server.connect();
    sub.ask("sub server.*", "\r\n");
    let h = c.get("server.com_get");
    assert_eq!(h.len(), 1);
    assert!(h[0].starts_with("OK 1 ") && h[0].ends_with(" 1"), "{h:?}");
    let h = c.get("server.com_get");
    assert!(h[0].ends_with(" 2") && h[1].ends_with(" 1"), "{h:?}");
    let all = c.get("server.*");
    for key in [
        "server.clients.total",
        "server.clients.commands",
        "server.clients.process_lines",
        "server.clients.event_reads",
        "server.com_get",
        "server.com_sub",
        "server.lines.ok.buffered",
        "server.lines.begin_outputs",
    ] {
        assert!(
            all.iter().any(|l| l.starts_with(&format!("OK {key} "))),
            "{key} in {all:?}"
        );
    }
    assert!(all
        .iter()
        .any(|l| l.starts_with("OK server.clients.total ") && l.ends_with(" 2")));
    // Never pushed to subscribers.
    assert_eq!(sub.read_for(Duration::from_millis(300)), b"");
}

#[test]
fn unusual_sub_words_are_counted_too() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.ask("SUBwhatever k", "\r\n"), "OK k\r\n");
    let h = c.get("server.com_subwhatever");
    assert_eq!(h.len(), 1);
}

// ---- The eight deliberate fixes ----

#[test]
fn fix1_an_empty_line_is_ignored() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("set 1 a 1\n\n\nset 2 b 2\n");
    assert_eq!(c.read_until_suffix(b"OK \r\nOK \r\n", T), b"OK \r\nOK \r\n");
}

#[test]
fn fix2_overlapping_subscriptions_push_once() {
    let server = SpudServer::start(&[]);
    let mut sub = server.connect();
    sub.send("sub new.*\r\nsub *key\r\nsub new\r\n");
    sub.read_until_suffix(b"OK new\r\n", T);
    let mut setter = server.connect();
    setter.ask("set 7 new.key v", "\r\n");
    setter.ask("set 8 new.key w", "\r\n");
    assert_eq!(
        sub.read_until_suffix(b"SET 8 new.key w\r\n", T),
        b"SET 7 new.key v\r\nSET 8 new.key w\r\n"
    );
    assert_eq!(sub.read_for(Duration::from_millis(200)), b"");
}

#[test]
fn fix3_nothing_after_quit_runs() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.send("quit\r\nset 1 afterquit 1\r\n");
    assert_eq!(c.read_to_close(T), b"");
    let mut d = server.connect();
    assert_eq!(
        d.ask("get afterquit", "\r\n"),
        "ERR not_found Information not in record\r\n"
    );
}

#[test]
fn fix4_closed_connections_lose_their_subscriptions() {
    let server = SpudServer::start(&[]);
    let mut a = server.connect();
    a.ask("sub gone.*", "\r\n");
    a.ask("quit", "");
    drop(a);
    let mut b = server.connect();
    // The close is noticed asynchronously; give it a moment.
    let deadline = std::time::Instant::now() + T;
    loop {
        if b.get_list("listall").is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "subscription lingered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let up = b.ask("uptime", "OK done\r\n");
    assert!(up.contains("OK 0 subscriptions,"), "{up}");
}

#[test]
fn fix5_invalid_patterns_are_errors_not_crashes() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let reply = c.ask("get (*", "\r\n");
    assert!(reply.starts_with("ERR bad_pattern "), "{reply}");
    assert_eq!(lines(&reply).len(), 1);
    assert!(c.ask("sub [", "\r\n").starts_with("ERR bad_pattern "));
    assert!(c.get_list("list").is_empty());
    assert_eq!(c.ask("set 1 still 1", "\r\n"), "OK \r\n");
}

#[test]
fn fix6_clients_that_leave_without_reading_do_not_hurt() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..2000 {
        batch.push_str(&format!("qset 1 fill.{i} {}\r\n", "x".repeat(100)));
    }
    c.send(&batch);
    c.get("fill.1999");
    for _ in 0..20 {
        let mut rude = server.connect();
        rude.send("get fill.*\r\nget fill.*\r\nget fill.*\r\n");
        drop(rude);
    }
    let mut d = server.connect();
    assert_eq!(d.ask("set 1 alive 1", "\r\n"), "OK \r\n");
}

#[test]
fn fix7_overlong_lines_are_refused_and_the_connection_closed() {
    let server = SpudServer::start(&["--max-line", "1000"]);
    let mut c = server.connect();
    c.send(format!("set 1 ok 1\r\nset 1 long {}", "x".repeat(5000)));
    let got = String::from_utf8(c.read_to_close(T)).unwrap();
    assert_eq!(
        got,
        "OK \r\nERR line_too_long Line longer than 1000 bytes; disconnected\r\n"
    );
    let mut d = server.connect();
    assert_eq!(d.get("server.clients.lines_too_long").len(), 1);
}

#[test]
fn fix7_slow_subscribers_are_cut_off_and_counted() {
    let server = SpudServer::start(&["--max-pending", "100000"]);
    let mut slow = server.connect();
    slow.ask("sub slow.*", "\r\n");
    // It never reads; the setter keeps going regardless.
    let mut setter = server.connect();
    let value = "v".repeat(1000);
    let mut batch = String::new();
    for i in 0..20_000 {
        batch.push_str(&format!("qset slow.k{} {value}\r\n", i % 100));
    }
    setter.send(&batch);
    let h = setter.get("server.clients.slow_subscribers");
    assert_eq!(h.len(), 1, "{h:?}");
    // Once it reads, it finds the reason at the end of what it was sent, then the close.
    let got = slow.read_to_close(T);
    let tail = String::from_utf8_lossy(&got[got.len().saturating_sub(200)..]).to_string();
    assert!(
        tail.ends_with("ERR slow_subscriber Too many updates waiting to be read; disconnected\r\n"),
        "{tail}"
    );
    assert_eq!(setter.ask("set 1 fine 1", "\r\n"), "OK \r\n");
}

#[test]
fn fix8_shutdown_is_refused_beyond_loopback() {
    // Told knowingly that anyone may use it (protected mode would refuse otherwise).
    let mut server = SpudServer::start(&["--listen", "0.0.0.0:0", "--no-auth"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let mut c = Client::connect(addr);
    let reply = c.ask("shutdown", "\r\n");
    assert!(reply.starts_with("ERR not_allowed "), "{reply}");
    assert!(server.process.wait(Duration::from_millis(300)).is_none());
    assert_eq!(c.ask("set 1 up 1", "\r\n"), "OK \r\n");
}

// ---- Scale ----

#[test]
fn a_thousand_concurrent_connections() {
    let server = SpudServer::start(&[]);
    let mut clients: Vec<Client> = (0..1000).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("set 1 conn.{i} {i}\r\n"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read_until_suffix(b"OK \r\n", T), b"OK \r\n");
        assert_eq!(c.get(&format!("conn.{i}")), [format!("OK 1 1 {i}")]);
    }
    let all = clients[0].get("conn.*");
    assert_eq!(all.len(), 1000);
}

trait ListExt {
    fn get_list(&mut self, verb: &str) -> Vec<String>;
}

impl ListExt for Client {
    fn get_list(&mut self, verb: &str) -> Vec<String> {
        let reply = self.ask(verb, "OK done\r\n");
        reply
            .trim_end_matches("OK done\r\n")
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }
}
