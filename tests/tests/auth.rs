//! Tokens with roles: over the line protocol, over HTTP, from `spud` and from spud-host's
//! remote sink; and the protected mode that refuses an open server beyond loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spud_tests::{binary, http, Client, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(20);
const READER: &str = "reader-0123456789abcdef";
const WRITER: &str = "writer-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

/// A tokens file in `dir`, readable by its owner only.
fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[token]]\nname = \"dashboards\"\nsecret = \"{READER}\"\nroles = [\"read\"]\n\n\
             [[token]]\nname = \"collectors\"\nsecret = \"{WRITER}\"\nroles = [\"write\"]\n\n\
             [[token]]\nname = \"ops\"\nsecret = \"{ADMIN}\"\nroles = [\"read\", \"write\", \"admin\"]\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A client token file holding `secret`.
fn token_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn line(c: &mut Client, request: &str) -> String {
    c.ask(request, "\r\n").trim_end().to_string()
}

#[test]
fn tokens_give_each_connection_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let server = SpudServer::start(&["--tokens", tokens.to_str().unwrap()]);

    let mut anonymous = server.connect();
    assert_eq!(
        line(&mut anonymous, "get k"),
        "ERR auth_required get needs the read role: send auth TOKEN with a token that has it"
    );
    assert!(
        line(&mut anonymous, "set k 1").starts_with("ERR auth_required set needs the write role")
    );
    // A refused qset is answered too, though a stored one is not.
    assert!(line(&mut anonymous, "qset k 1").starts_with("ERR auth_required"));
    assert!(line(&mut anonymous, "sub k").starts_with("ERR auth_required sub needs the read role"));
    assert!(line(&mut anonymous, "shutdown")
        .starts_with("ERR auth_required shutdown needs the admin role"));

    let mut writer = server.connect();
    assert_eq!(
        line(&mut writer, &format!("auth {WRITER}")),
        "OK authenticated as collectors (write)"
    );
    assert_eq!(line(&mut writer, "set k 42"), "OK");
    assert!(line(&mut writer, "get k").starts_with("ERR auth_required get needs the read role"));

    let mut reader = server.connect();
    assert_eq!(
        line(&mut reader, &format!("auth {READER}")),
        "OK authenticated as dashboards (read)"
    );
    assert_eq!(reader.history("k").len(), 1);
    assert!(line(&mut reader, "set k 43").starts_with("ERR auth_required"));
    assert!(line(&mut reader, "shutdown")
        .starts_with("ERR auth_required shutdown needs the admin role"));

    // Wrong secrets: answered, and the third closes the connection.
    let mut guesser = server.connect();
    assert_eq!(
        line(&mut guesser, "auth nope"),
        "ERR auth_failed No token has this secret"
    );
    assert_eq!(
        line(&mut guesser, &format!("auth {READER}x")),
        "ERR auth_failed No token has this secret"
    );
    guesser.send("auth guess\r\n");
    let rest = String::from_utf8(guesser.read_to_close(T)).unwrap();
    assert_eq!(rest, "ERR auth_failed No token has this secret\r\n");
    server.process.wait_log("auth with an unknown secret", T);

    // Only an admin stops it; the value stored before is untouched by everything refused.
    assert_eq!(reader.history("k")[0].rsplit(' ').next(), Some("42"));
    let mut admin = server.connect();
    assert_eq!(
        line(&mut admin, &format!("auth {ADMIN}")),
        "OK authenticated as ops (read,write,admin)"
    );
    admin.send("shutdown\r\n");
    let mut server = server;
    assert!(server.process.wait(T).is_some_and(|s| s.success()));
}

#[test]
fn a_server_without_tokens_answers_auth_and_changes_nothing() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(
        line(&mut c, "auth anything"),
        "OK no authentication on this server"
    );
    assert_eq!(line(&mut c, "set k 1"), "OK");
}

#[test]
fn an_open_server_beyond_loopback_is_refused_unless_asked_for() {
    let out = Command::new(binary("spud-server"))
        .args(["--listen", "0.0.0.0:0", "--no-http"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("--tokens FILE")
            && stderr.contains("--no-auth"),
        "{stderr}"
    );
    // The HTTP listener counts too.
    let out = Command::new(binary("spud-server"))
        .args(["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0:0"));

    // Told knowingly, or with tokens: it starts.
    SpudServer::start(&["--listen", "0.0.0.0:0", "--no-http", "--no-auth"]);
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    SpudServer::start(&[
        "--listen",
        "0.0.0.0:0",
        "--no-http",
        "--tokens",
        tokens.to_str().unwrap(),
    ]);

    // A tokens file others may read is refused, naming the fix.
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(binary("spud-server"))
        .args(["--no-http", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds secrets but other users may read or write it (mode 0644)"),
        "{stderr}"
    );
}

#[test]
fn http_needs_a_bearer_token_with_the_role() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let server = SpudServer::start(&["--tokens", tokens.to_str().unwrap()]);
    let base = format!("http://{}", server.http.unwrap());

    let (status, body) = http::get(&format!("{base}/api/keys"));
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"error":"this needs a token with the read role"}"#)
    );
    assert_eq!(
        http::get_with_token(&format!("{base}/api/keys"), "wrong").0,
        401
    );
    assert_eq!(
        http::get_with_token(&format!("{base}/metrics"), WRITER).0,
        403
    );
    // The dashboard's files stay open; it asks for a token when the API refuses it.
    assert_eq!(http::get(&format!("{base}/")).0, 200);

    let push = br#"{"metric": "cpu", "value": 3, "tags": {"host": "a"}}"#;
    assert_eq!(
        http::post_with_token(&format!("{base}/api/push"), READER, push).0,
        403
    );
    assert_eq!(
        http::post_with_token(&format!("{base}/api/push"), WRITER, push).0,
        200
    );
    let (status, body) = http::get_with_token(&format!("{base}/api/keys?match=cpu"), READER);
    assert_eq!(status, 200);
    assert!(body.contains("cpu.host:a"), "{body}");
    // EventSource cannot set headers: the token may come as a parameter.
    let (status, _) = http::get(&format!("{base}/metrics?access_token={READER}"));
    assert_eq!(status, 200);
}

#[test]
fn the_command_line_and_the_host_authenticate_with_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let server = SpudServer::start(&["--tokens", tokens.to_str().unwrap()]);
    let addr = server.addr.to_string();
    let ops = token_file(dir.path(), "ops.token", ADMIN);
    let spud = |args: &[&str], token: Option<&Path>| {
        let mut cmd = Command::new(binary("spud"));
        cmd.args(["--server", &addr]).args(args);
        if let Some(token) = token {
            cmd.arg("--token-file").arg(token);
        }
        cmd.output().unwrap()
    };
    let out = spud(&["set", "from.cli", "7"], Some(&ops));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = spud(&["get", "from.cli"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth_required"));
    let wrong = token_file(dir.path(), "wrong.token", "not-a-token-at-all");
    let out = spud(&["get", "from.cli"], Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the server refused the token: auth_failed")
    );
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = spud(&["get", "from.cli"], Some(&wrong));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other users may read or write it"));

    // spud-host pushing to it with the collectors' token (write only).
    let host_dir = SpudHost::prepare(
        &["chaos"],
        &format!(
            "[server]\nremote = \"{addr}\"\ntoken_file = \"collector.token\"\n\n\
             [[job]]\nname = \"pushed\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n"
        ),
    );
    token_file(host_dir.path(), "collector.token", WRITER);
    let _host = SpudHost::start_in(host_dir);
    let mut reader = server.connect();
    assert!(line(&mut reader, &format!("auth {READER}")).starts_with("OK"));
    let deadline = std::time::Instant::now() + T;
    while reader.get("pushed.tick").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the host's samples never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_hosts_embedded_server_takes_tokens_and_refuses_to_be_open() {
    let dir = SpudHost::prepare(
        &["chaos"],
        "[server]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\n\n\
         [[job]]\nname = \"j\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n",
    );
    tokens_file(dir.path());
    let host = SpudHost::start_in(dir);
    let mut c = Client::connect(host.addr.unwrap());
    assert!(line(&mut c, "jobs").starts_with("ERR auth_required host control needs the admin role"));
    assert!(line(&mut c, &format!("auth {ADMIN}")).starts_with("OK authenticated as ops"));
    assert!(
        c.ask("jobs", "OK done\r\n").contains("j "),
        "the admin sees the jobs"
    );

    // Beyond loopback without tokens: refused at start, naming the settings.
    let dir = SpudHost::prepare(
        &["chaos"],
        "[server]\nlisten = \"0.0.0.0:0\"\nhttp = \"off\"\n",
    );
    let out = Command::new(binary("spud-host"))
        .arg("--conf")
        .arg(dir.path().join("gatherer.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("[server] no_auth = true"),
        "{stderr}"
    );
}
