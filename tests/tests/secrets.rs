//! Secrets out of files. Every secret setting is given once as `env:NAME` and once as
//! `file:PATH` (found in `$CREDENTIALS_DIRECTORY`, as systemd's `LoadCredential=` provides
//! it), each reaching a real component that checks it: the stat server's tokens, a
//! client's token, remote-write basic auth and headers (VictoriaMetrics with
//! `-httpAuth.*`), NATS tokens and passwords (nats-server with `authorization`), webhook
//! URLs (a webhook receiver, and one that is down), TLS keys (the stat server's TLS). Then
//! no log line, no `/api` answer, no stored value and no `check-config` output holds any
//! of them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use spud_tests::alertmanager::Receiver;
use spud_tests::nats::Nats;
use spud_tests::victoria::Victoria;
use spud_tests::{binary, free_port, http, Pki, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(30);

/// Every secret of the test, by what it is: none may show anywhere.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn add(&mut self, what: &'static str, value: impl Into<String>) -> String {
        let value = value.into();
        self.0.push((what, value.clone()));
        value
    }

    fn absent_from(&self, place: &str, text: &str) {
        for (what, value) in &self.0 {
            assert!(
                !text.contains(value.as_str()),
                "{what} ({value}) shows in {place}:\n{text}"
            );
        }
    }
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn secrets_from_the_environment_and_credentials_reach_their_services_and_nowhere_else() {
    let mut secrets = Secrets(Vec::new());
    let creds = tempfile::tempdir().unwrap();
    let cred = |name: &str, text: &str| private(&creds.path().join(name), text);
    let mut env: Vec<(String, String)> = Vec::new();

    // The stat server's tokens: one secret from the environment, one from a credential.
    let writer = secrets.add("a token from env:", "token-writer-from-env-7f3a9c");
    let reader = secrets.add("a token from file:", "token-reader-from-file-2b8e1d");
    env.push(("SPUD_TEST_WRITER".into(), writer.clone()));
    cred("reader.secret", &format!("{reader}\n"));

    // Remote write into VictoriaMetrics that asks for basic authentication.
    let vm_password = secrets.add("a remote-write password", "vm-password-5c1e7a90");
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("spud:{vm_password}"))
    );
    secrets.add("a remote-write header", authorization.clone());
    let vm = Victoria::start_with(&[
        "-httpAuth.username=spud",
        &format!("-httpAuth.password={vm_password}"),
    ]);
    env.push(("SPUD_TEST_VM_PASSWORD".into(), vm_password.clone()));
    env.push(("SPUD_TEST_VM_HEADER".into(), authorization.clone()));
    cred("vm.password", &vm_password);
    cred("vm.header", &authorization);

    // NATS: one server checks a token, another users and passwords.
    let nats_token = secrets.add("a NATS token", "nats-token-9d2c4b71");
    let nats_password = secrets.add("a NATS password", "nats-password-3e6f0a52");
    let by_token = Nats::single(&format!("authorization {{ token: \"{nats_token}\" }}"));
    let by_user = Nats::single(&format!(
        "authorization {{ users: [ {{ user: \"spud\", password: \"{nats_password}\" }} ] }}"
    ));
    env.push(("SPUD_TEST_NATS_TOKEN".into(), nats_token.clone()));
    env.push(("SPUD_TEST_NATS_PASSWORD".into(), nats_password.clone()));
    cred("nats.token", &nats_token);
    cred("nats.password", &nats_password);

    // Webhooks whose URLs hold their token; one of them down, so that its failures are logged.
    let hook = Receiver::start(free_port());
    let hook_env = secrets.add("a webhook path from env:", "hook-path-env-41c9e2");
    let hook_file = secrets.add("a webhook path from file:", "hook-path-file-8a07d3");
    let hook_down = secrets.add("a down webhook's path", "hook-path-down-6b15f8");
    let down = free_port();
    env.push((
        "SPUD_TEST_HOOK".into(),
        format!("http://{}/services/{hook_env}", hook.addr),
    ));
    env.push((
        "SPUD_TEST_HOOK_DOWN".into(),
        format!("http://{down}/services/{hook_down}"),
    ));
    cred(
        "hook.url",
        &format!("http://{}/services/{hook_file}", hook.addr),
    );

    let mut outputs = String::new();
    for (name, auth) in [
        (
            "vm_password_env",
            "basic_auth = { username = \"spud\", password = \"env:SPUD_TEST_VM_PASSWORD\" }",
        ),
        (
            "vm_password_file",
            "basic_auth = { username = \"spud\", password = \"file:vm.password\" }",
        ),
        (
            "vm_header_env",
            "headers = { Authorization = \"env:SPUD_TEST_VM_HEADER\" }",
        ),
        (
            "vm_header_file",
            "headers = { Authorization = \"file:vm.header\" }",
        ),
    ] {
        outputs.push_str(&format!(
            "[[output]]\ntype = \"prometheus_remote_write\"\nname = \"{name}\"\nurl = \"{}\"\n\
             match = \"secret.*\"\nlabels = {{ via = \"{name}\" }}\nflush = \"200ms\"\n{auth}\n\n",
            vm.write_url()
        ));
    }
    for (name, servers, auth) in [
        (
            "nats_token_env",
            by_token.servers_toml(),
            "token = \"env:SPUD_TEST_NATS_TOKEN\"",
        ),
        (
            "nats_token_file",
            by_token.servers_toml(),
            "token = \"file:nats.token\"",
        ),
        (
            "nats_password_env",
            by_user.servers_toml(),
            "user = \"spud\"\npassword = \"env:SPUD_TEST_NATS_PASSWORD\"",
        ),
        (
            "nats_password_file",
            by_user.servers_toml(),
            "user = \"spud\"\npassword = \"file:nats.password\"",
        ),
    ] {
        outputs.push_str(&format!(
            "[[output]]\ntype = \"nats\"\nname = \"{name}\"\nservers = {servers}\nstream = \"{}\"\n\
             subject = \"{name}\"\nmatch = \"secret.*\"\n{auth}\n\n",
            name.to_uppercase()
        ));
    }
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\n\
         rules = \"alerts.toml\"\n\n\
         [[job]]\nname = \"secret\"\nplugin = \"test\"\ninterval = \"200ms\"\n\n{outputs}"
    );
    let dir = SpudHost::prepare(&["test"], &config);
    private(
        &dir.path().join("tokens.toml"),
        "anonymous = []\n\
         [[token]]\nname = \"collectors\"\nsecret = \"env:SPUD_TEST_WRITER\"\nroles = [\"read\", \"write\"]\n\
         [[token]]\nname = \"dashboards\"\nsecret = \"file:reader.secret\"\nroles = [\"read\"]\n",
    );
    std::fs::write(
        dir.path().join("alerts.toml"),
        "[[alert]]\nname = \"beating\"\nkeys = \"test.secret\"\nwarn = \"last > 0\"\n\n\
         [[notify]]\nname = \"env\"\ntype = \"webhook\"\nurl = \"env:SPUD_TEST_HOOK\"\n\n\
         [[notify]]\nname = \"file\"\ntype = \"webhook\"\nurl = \"file:hook.url\"\n\n\
         [[notify]]\nname = \"down\"\ntype = \"webhook\"\nurl = \"env:SPUD_TEST_HOOK_DOWN\"\ntimeout = \"1s\"\n",
    )
    .unwrap();
    let credentials = creds.path().display().to_string();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("CREDENTIALS_DIRECTORY", &credentials));
    let conf = dir.path().join("gatherer.toml");
    let host = SpudHost::start_in_env(dir, &vars);
    let api = host.http.unwrap();

    // Each reached what checks it.
    let mut c = host.connect();
    assert!(c
        .ask(&format!("auth {writer}"), "\n")
        .starts_with("OK authenticated as collectors"));
    let mut c2 = host.connect();
    assert!(c2
        .ask(&format!("auth {reader}"), "\n")
        .starts_with("OK authenticated as dashboards"));
    let vm_auth = [("Authorization", authorization.as_str())];
    for via in [
        "vm_password_env",
        "vm_password_file",
        "vm_header_env",
        "vm_header_file",
    ] {
        wait(
            &format!("remote write {via} reached VictoriaMetrics"),
            || {
                http::get_with(
                    &format!("http://{}/internal/force_flush", vm.addr),
                    &vm_auth,
                );
                let (status, body) = http::get_with(
                    &format!(
                        "http://{}/api/v1/export?match[]={{via=%22{via}%22}}",
                        vm.addr
                    ),
                    &vm_auth,
                );
                status == 200 && body.contains("secret")
            },
        );
    }
    for (nats, stream) in [
        (&by_token, "NATS_TOKEN_ENV"),
        (&by_token, "NATS_TOKEN_FILE"),
        (&by_user, "NATS_PASSWORD_ENV"),
        (&by_user, "NATS_PASSWORD_FILE"),
    ] {
        wait(&format!("{stream} got messages"), || {
            nats.stream_messages(stream).unwrap_or(0) > 0
        });
    }
    for (path, name) in [(&hook_env, "env"), (&hook_file, "file")] {
        let _ = path;
        hook.wait(T, "a notice from each webhook", |bodies| {
            bodies.iter().any(|b| b["receiver"] == name)
        });
    }
    host.process.wait_log("notify down (webhook)", T);

    // Nowhere else: the log, every /api answer, every stored value, check-config.
    std::thread::sleep(Duration::from_secs(2));
    let bearer = [("Authorization", format!("Bearer {reader}"))];
    let bearer: Vec<(&str, &str)> = bearer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for path in [
        "/api/keys",
        "/api/jobs",
        "/api/plugins",
        "/api/alerts",
        "/api/uptime",
        "/api/history/host.output.vm_password_env.sent",
        "/metrics",
    ] {
        let (status, body) = http::get_with(&format!("http://{api}{path}"), &bearer);
        assert_eq!(status, 200, "{path}: {body}");
        secrets.absent_from(path, &body);
    }
    let (_, keys) = http::get_with(&format!("http://{api}/api/keys"), &bearer);
    let keys: Vec<String> = regex::Regex::new(r#""(host\.[^"]+)""#)
        .unwrap()
        .captures_iter(&keys)
        .map(|k| k[1].to_string())
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in &keys {
        let values = c.history(key).join("\n");
        secrets.absent_from(&format!("the stored {key}"), &values);
    }
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(&conf)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    secrets.absent_from("check-config", &said);
    // A secret that is missing is named by where it was looked for.
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    assert!(
        said.contains("env:SPUD_TEST_VM_PASSWORD: the environment variable is not set"),
        "{said}"
    );
    secrets.absent_from("check-config without the environment", &said);
    let log = host.process.log();
    assert!(log.contains("notify down (webhook)"), "{log}");
    secrets.absent_from("the host's log", &log);
}

#[test]
fn tls_keys_and_client_tokens_from_the_environment_and_credentials() {
    let pki = Pki::new();
    let key = std::fs::read_to_string(pki.file("server.key")).unwrap();
    let creds = tempfile::tempdir().unwrap();
    private(&creds.path().join("server.key"), &key);
    let token = "client-token-4f8b2e6a1c";
    private(&creds.path().join("client.token"), token);
    let tokens = tempfile::tempdir().unwrap();
    private(
        &tokens.path().join("tokens.toml"),
        "anonymous = []\n[[token]]\nname = \"ops\"\nsecret = \"file:client.token\"\nroles = [\"read\", \"write\"]\n",
    );
    let credentials = creds.path().display().to_string();
    let tokens_file = tokens.path().join("tokens.toml").display().to_string();
    let cert = pki.file("server.pem");
    // The key from the environment, then from a credential.
    let by_env = SpudServer::start_env(
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            "env:SPUD_TEST_TLS_KEY",
            "--tokens",
            &tokens_file,
            "--no-http",
        ],
        &[
            ("SPUD_TEST_TLS_KEY", &key),
            ("CREDENTIALS_DIRECTORY", &credentials),
        ],
    );
    let by_file = SpudServer::start_env(
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            "file:server.key",
            "--tokens",
            &tokens_file,
            "--no-http",
        ],
        &[("CREDENTIALS_DIRECTORY", &credentials)],
    );
    let ca = pki.file("ca.pem");
    for (server, token_file) in [
        (&by_env, "env:SPUD_TEST_TOKEN"),
        (&by_file, "file:client.token"),
    ] {
        let spud = |args: &[&str]| {
            let out = Command::new(binary("spud"))
                .args([
                    "--server",
                    &server.addr.to_string(),
                    "--tls-ca",
                    &ca,
                    "--token-file",
                    token_file,
                ])
                .args(args)
                .env("SPUD_TEST_TOKEN", token)
                .env("CREDENTIALS_DIRECTORY", &credentials)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(
                !text.contains(token) && !text.contains("PRIVATE KEY"),
                "{text}"
            );
            text
        };
        spud(&["set", "secret.key", "42"]);
        assert!(spud(&["get", "secret.key"]).contains("42"));
        let log = server.process.log();
        assert!(
            !log.contains(token) && !log.contains("PRIVATE KEY"),
            "{log}"
        );
    }
}
