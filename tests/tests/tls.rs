//! TLS (rustls) on the server's listeners, from `spud`, from spud-host's remote sink and
//! from the replicator; mutual TLS. Certificates are made for each run with Debian's
//! `openssl`; the HTTPS client is Debian's `curl`.

use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use spud_tests::{binary, Pki, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(20);

fn tls_server(pki: &Pki, extra: &[&str]) -> SpudServer {
    let (cert, key) = (pki.file("server.pem"), pki.file("server.key"));
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    SpudServer::start(&args)
}

fn spud(server: &SpudServer, args: &[&str]) -> Output {
    Command::new(binary("spud"))
        .args(["--server", &server.addr.to_string()])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_server_speaks_tls_on_both_listeners() {
    let pki = Pki::new();
    let server = tls_server(&pki, &[]);
    let ca = pki.file("ca.pem");

    let out = spud(&server, &["--tls-ca", &ca, "set", "over.tls", "42"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = spud(&server, &["--tls-ca", &ca, "get", "over.tls", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"42\""));

    // A certificate from another CA is refused by the client, with the reason.
    let out = spud(
        &server,
        &["--tls-ca", &pki.file("rogue-ca.pem"), "get", "over.tls"],
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid peer certificate"),
        "{}",
        stderr(&out)
    );

    // Plain text gets no answer: the server takes it for a broken handshake and hangs up.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(T)).unwrap();
    plain.write_all(b"get over.tls\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("OK"),
        "{answer:?}"
    );
    server.process.wait_log("TLS handshake with", T);

    // HTTPS, with a client that is not ours.
    let url = format!(
        "https://127.0.0.1:{}/api/keys?match=over",
        server.http.unwrap().port()
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &ca, &url])
        .output()
        .expect("curl (scripts/setup-test-deps installs it)");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("over.tls"));
}

#[test]
fn mutual_tls_lets_in_only_clients_with_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let client_ca = pki.file("ca.pem");
    // A client CA is authentication: the server may listen beyond loopback without tokens.
    let server = tls_server(
        &pki,
        &["--tls-client-ca", &client_ca, "--listen", "0.0.0.0:0"],
    );
    let server = SpudServer {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port())),
        ..server
    };
    let ca = pki.file("ca.pem");
    let out = spud(&server, &["--tls-ca", &ca, "set", "k", "1"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a client without a certificate got in"
    );
    let (cert, key) = (pki.file("client.pem"), pki.file("client.key"));
    let out = spud(
        &server,
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "set",
            "k",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A certificate the server's certificate signed… by the other CA: refused too.
    let out = spud(
        &server,
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &pki.file("rogue-ca.pem"),
            "--tls-key",
            &pki.file("rogue-ca.key"),
            "get",
            "k",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn the_host_and_the_replicator_push_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki, &[]);
    let ca = pki.file("ca.pem");

    let dir = SpudHost::prepare(
        &["chaos"],
        &format!(
            "[server]\nremote = \"{}\"\ntls_ca = \"{ca}\"\n\n\
             [[job]]\nname = \"secure\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n",
            server.addr
        ),
    );
    let _host = SpudHost::start_in(dir);

    // The replicator: from a plain server into the TLS one.
    let source = SpudServer::start(&[]);
    let mut replicator = Command::new(binary("spud"))
        .args([
            "replicate",
            "--from",
            &source.addr.to_string(),
            "--to",
            &server.addr.to_string(),
            "--to-tls-ca",
            &ca,
            "--match",
            "copied",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    source.connect().ask("set 1234 copied.value 7", "\r\n");

    let deadline = Instant::now() + T;
    loop {
        let tick = spud(&server, &["--tls-ca", &ca, "get", "secure.tick"]);
        let copied = spud(&server, &["--tls-ca", &ca, "get", "copied.value"]);
        if tick.status.success() && copied.status.success() {
            assert!(String::from_utf8_lossy(&copied.stdout).contains('7'));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            stderr(&tick),
            stderr(&copied)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = replicator.kill();
    let _ = replicator.wait();
}
