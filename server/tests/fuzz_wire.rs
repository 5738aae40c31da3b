//! The line protocol fuzzed over a real socket, against the real server: generated input
//! (the protocol's own words, keys, patterns, blanks, line ends and any bytes, cut into
//! random writes) and the seed corpus in `fuzz/corpus/`. Whatever arrives, the server never
//! panics, answers only in whole `OK`/`ERR`/`SET` lines, and every stored value carries on.
//!
//! A bounded run in the test command; `PROPTEST_CASES=100000 cargo test -p spud-server
//! --test fuzz_wire` for a long one. Failures found are kept in `proptest-regressions/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use spud_server::faces::net::{serve, ServeOptions};
use spud_server::{Config, Server};

/// A key no generated input can name (the generator's keys are at most 8 characters).
const SENTINEL: &str = "sentinel.of.the.fuzz.run";
static PANICKED: AtomicBool = AtomicBool::new(false);

/// One server for the whole run, on its own runtime.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let server = Server::new(Config::default());
                server.set(SENTINEL, "intact", Some(1)).unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let mut options = ServeOptions::for_addr(addr);
                // Generated input may say `shutdown`; short lines exercise the limit.
                options.allow_shutdown = false;
                options.max_line = 4096;
                tx.send(addr).unwrap();
                let shutdown = tokio_util::sync::CancellationToken::new();
                serve(server, listener, options, shutdown).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

/// Sends `chunks`, closes the sending side and reads every answer.
fn converse(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for chunk in chunks {
        // The server may have hung up (quit, a line too long): that is an answer too.
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

fn check(chunks: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let out = converse(chunks);
    prop_assert!(!PANICKED.load(Ordering::SeqCst), "the server panicked");
    // Whole lines only, each an answer or a push.
    if !out.is_empty() {
        prop_assert!(
            out.ends_with(b"\r\n"),
            "a partial line: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        prop_assert!(
            line.starts_with(b"OK") || line.starts_with(b"ERR ") || line.starts_with(b"SET "),
            "not an answer: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    // The store carries on: the value set before the run is still there.
    let after = converse(&[format!("get {SENTINEL}\r\n").into_bytes()]);
    prop_assert_eq!(
        String::from_utf8_lossy(&after),
        "OK 1 1 intact\r\nOK done\r\n"
    );
    Ok(())
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just("get"),
        Just("set"),
        Just("qset"),
        Just("sub"),
        Just("subscribe"),
        Just("list"),
        Just("listall"),
        Just("uptime"),
        Just("quickset"),
        Just("auth"),
        Just("shutdown"),
        Just("GET"),
        Just("subx"),
        Just("quit"),
    ]
    .prop_map(|w| w.as_bytes().to_vec());
    let piece = prop_oneof![
        4 => word,
        4 => Just(b" ".to_vec()),
        3 => prop_oneof![Just(b"\r\n".to_vec()), Just(b"\n".to_vec()), Just(b"\r".to_vec())],
        3 => "[-A-Za-z0-9_.:]{1,8}".prop_map(String::into_bytes),
        2 => "[*.()\\[\\]{}\\\\^$|+?0-9,]{1,6}".prop_map(String::into_bytes),
        2 => "[0-9]{1,25}".prop_map(String::into_bytes),
        1 => Just(b"on".to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 1..6),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// Cuts `bytes` at the given points (as fractions of its length).
fn cut(bytes: &[u8], points: &[f64]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = points
        .iter()
        .map(|p| (p * bytes.len() as f64) as usize)
        .collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for to in at.into_iter().chain([bytes.len()]) {
        if to > from {
            chunks.push(bytes[from..to].to_vec());
            from = to;
        }
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_input_in_any_pieces(
        bytes in input(),
        points in proptest::collection::vec(0.0..1.0f64, 0..6),
    ) {
        check(&cut(&bytes, &points))?;
    }
}

#[test]
fn the_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        // Whole, byte by byte at the start, and in two halves.
        check(std::slice::from_ref(&bytes)).unwrap();
        let mut bytewise: Vec<Vec<u8>> = bytes.iter().take(64).map(|b| vec![*b]).collect();
        bytewise.push(bytes[bytes.len().min(64)..].to_vec());
        check(&bytewise).unwrap();
        check(&cut(&bytes, &[0.5])).unwrap();
        seen += 1;
    }
    assert!(seen >= 5, "the corpus in {} is missing", dir.display());
}
