//! `type = "nats"`: the host's samples also go to a NATS JetStream stream, from which the
//! `nats` collector of any number of central servers reads them (several durable consumers:
//! each server gets everything; one shared: they split the work).
//!
//! A sample is one message on `<subject>.<key>` (the key's dots are subject tokens; a
//! `*`, `>` or an empty token becomes `_`), its body `TIME KEY VALUE` as `set` takes it.
//! The stream is made if missing, taking `<subject>.>`. Each message carries the id
//! `<backlog>-<record>` (`Nats-Msg-Id`), the same when it is sent again after an outage or a
//! restart of the host, so the stream stores it once. Samples wait in the backlog (memory or
//! spool) until the stream acknowledges them; at most `window` are awaiting that at once.
//! Figures: `host.output.<name>.{sent,connected,buffered,spooled,dropped,oldest_age}`.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::Deserialize;
use spud_access::SecretRef;

use spud_server::Pattern;
use spud_spool::{Backlog, Record};

use super::{Output, OutputSettings, Sending, Started};

/// How long a publish may wait for the stream's acknowledgement before the output sends
/// it again (the same id: stored once), as a NATS node that died never answers.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Its `[[output]]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Names its figures (default: its position, `output1`).
    pub name: Option<String>,
    /// The cluster's servers; any one that answers will do.
    #[serde(default = "default_servers")]
    pub servers: Vec<String>,
    /// The subjects' prefix: a sample goes to `<subject>.<key>`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// The stream, made if missing.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Copies of the stream a made stream keeps (1, 3 or 5 in a cluster).
    #[serde(default = "one")]
    pub replicas: usize,
    /// Which keys to send (a pattern; default all).
    #[serde(rename = "match", default = "everything")]
    pub pattern: String,
    /// Authentication: a token, a user and password, or a creds file (a JWT and seed).
    /// `token`, `password`, `creds` and `tls_key` may be `env:NAME` or `file:PATH`.
    pub token: Option<SecretRef>,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    pub creds: Option<PathBuf>,
    /// TLS: trust servers this CA signed; present this certificate and key if asked.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Messages awaiting the stream's acknowledgement, at most.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Samples kept in memory while the stream is away.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// Samples wait in this directory instead (relative to the config file).
    pub spool: Option<PathBuf>,
    /// The spool's bound in bytes (default 1 GiB).
    pub spool_max: Option<u64>,
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_subject() -> String {
    "spud".into()
}
fn default_stream() -> String {
    "SPUD".into()
}
fn one() -> usize {
    1
}
fn everything() -> String {
    "*".into()
}
fn default_window() -> usize {
    8192
}
fn default_buffer() -> usize {
    100_000
}

impl OutputSettings for Settings {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn locator(&self) -> &str {
        self.servers.first().map_or("nats", String::as_str)
    }

    fn spool(&self) -> Option<&std::path::Path> {
        self.spool.as_deref()
    }

    fn problem(&self, base: &std::path::Path) -> Option<String> {
        for (what, secret) in [("token", &self.token), ("password", &self.password)] {
            if let Some(Err(e)) = secret.as_ref().map(|s| s.resolve(Some(base))) {
                return Some(format!("{what}: {e}"));
            }
        }
        if self.servers.is_empty() {
            return Some("servers is empty: name at least one nats:// address".into());
        }
        for server in &self.servers {
            if let Err(e) = async_nats::ServerAddr::from_str(server) {
                return Some(format!("servers: {server:?}: {e}"));
            }
        }
        let bad_token = |t: &str| t.is_empty() || t.contains(['*', '>', ' ', '\t']);
        if self.subject.split('.').any(bad_token) {
            return Some(format!(
                "subject {:?}: dot-separated names without blanks or wildcards",
                self.subject
            ));
        }
        if self.stream.is_empty() || self.stream.contains(['.', '*', '>', ' ', '/', '\\']) {
            return Some(format!(
                "stream {:?}: a name without dots, blanks, slashes or wildcards",
                self.stream
            ));
        }
        if let Err(e) = Pattern::new(&self.pattern) {
            return Some(format!("match = {:?}: {e}", self.pattern));
        }
        if self.user.is_some() != self.password.is_some() {
            return Some("user and password go together".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Some("tls_cert and tls_key go together".into());
        }
        let env_key = self.tls_key.as_ref().and_then(|k| k.to_str()).is_some_and(|k| k.starts_with("env:"));
        if env_key && self.tls_ca.is_none() {
            return Some("tls_key = \"env:…\" needs tls_ca".into());
        }
        if self.window == 0 || self.buffer == 0 {
            return Some("window and buffer must be at least 1".into());
        }
        None
    }

    fn start(&self, name: String, started: &Started) -> Arc<dyn Output> {
        tracing::info!(
            "output {name}: NATS stream {} on {}",
            self.stream,
            self.servers.join(",")
        );
        let backlog = started.backlog(&name, self.spool.as_deref(), self.spool_max, self.buffer);
        let mut config = self.clone();
        let file = |p: &Option<PathBuf>| p.as_deref().map(|p| started.path(p));
        (config.creds, config.tls_ca, config.tls_cert, config.tls_key) = (
            file(&self.creds),
            file(&self.tls_ca),
            file(&self.tls_cert),
            file(&self.tls_key),
        );
        let base = started.path(std::path::Path::new(""));
        Nats::start(name, config, base, backlog)
    }
}

/// A running NATS output.
pub struct Nats {
    name: String,
    config: Settings,
    /// The config's folder, where `file:` secrets start.
    base: PathBuf,
    pattern: Pattern,
    sending: Sending,
    sent: AtomicU64,
    connected: AtomicBool,
}

impl Nats {
    fn start(name: String, config: Settings, base: PathBuf, backlog: Arc<Backlog>) -> Arc<Nats> {
        let pattern = Pattern::new(&config.pattern).expect("checked with the config");
        let output = Arc::new(Nats {
            name,
            config,
            base,
            pattern,
            sending: Sending::new(backlog),
            sent: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        });
        let sender = Arc::clone(&output);
        let send = move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(sender.run());
        };
        Sending::spawn(&output.name, send, &output.sending);
        output
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        let c = &self.config;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("spud-host output {}", self.name))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        // Secrets are read at each connection, never kept in the settings.
        let base = self.base.as_path();
        if let Some(creds) = &c.creds {
            let text = spud_access::read_secret_setting(creds)
                .map_err(|e| format!("creds: {e}"))?;
            options = options
                .credentials(text.expose())
                .map_err(|e| format!("creds {}: {e}", creds.display()))?;
        }
        if let Some(token) = &c.token {
            let token = token.resolve(Some(base)).map_err(|e| format!("token: {e}"))?;
            options = options.token(token.expose().to_string());
        }
        if let (Some(user), Some(password)) = (&c.user, &c.password) {
            let password = password
                .resolve(Some(base))
                .map_err(|e| format!("password: {e}"))?;
            options = options.user_and_password(user.clone(), password.expose().to_string());
        }
        match (&c.tls_ca, &c.tls_cert, &c.tls_key) {
            // One TLS setup for every client of SPUD: keys may be `env:` or `file:`.
            (Some(ca), cert, key) => {
                let identity = cert.as_deref().zip(key.as_deref());
                let tls = spud_server::access::tls::client_config(ca, identity)?;
                options = options
                    .tls_client_config((*tls).clone())
                    .require_tls(true);
            }
            (None, Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            _ => {}
        }
        let name = self.name.clone();
        options = options.event_callback(move |event| {
            let name = name.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("output {name}: connected to NATS")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("output {name}: NATS connection lost; reconnecting")
                    }
                    other => tracing::debug!("output {name}: NATS {other}"),
                }
            }
        });
        options
            .connect(c.servers.as_slice())
            .await
            .map_err(|e| e.to_string())
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(250);
        let mut said_down = false;
        loop {
            if self.sending.stop.is_cancelled() {
                return;
            }
            let result = match self.connect().await {
                Ok(client) => {
                    // As many publishes awaiting acknowledgement as the window: a publish
                    // never waits for a permit that only polling its predecessors frees.
                    let js = jetstream::context::ContextBuilder::new()
                        .max_ack_inflight(self.config.window)
                        .ack_timeout(ACK_TIMEOUT)
                        .build(client);
                    match self.ensure_stream(&js).await {
                        Ok(()) => {
                            self.connected.store(true, Ordering::Relaxed);
                            if said_down {
                                tracing::info!(
                                    "output {}: stream {} takes samples again; {} held",
                                    self.name,
                                    self.config.stream,
                                    self.sending.backlog.held()
                                );
                            }
                            said_down = false;
                            backoff = Duration::from_millis(250);
                            self.publish(&js).await
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            self.connected.store(false, Ordering::Relaxed);
            // Not acknowledged: sent again, with the same ids.
            self.sending.backlog.rewind();
            match result {
                Ok(()) => return,
                Err(e) => {
                    if !said_down {
                        tracing::warn!(
                            "output {}: NATS {}: {e}; holding samples until it is back",
                            self.name,
                            self.config.servers.join(",")
                        );
                        said_down = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.sending.stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject)],
            num_replicas: self.config.replicas,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|e| format!("stream {}: {e}", self.config.stream))
    }

    /// Publishes until the connection fails (Err) or the output stops (Ok); each sample
    /// is acknowledged in the backlog once the stream has it, in order.
    async fn publish(&self, js: &jetstream::Context) -> Result<(), String> {
        let mut awaiting: FuturesOrdered<<PublishAckFuture as IntoFuture>::IntoFuture> =
            FuturesOrdered::new();
        loop {
            let stopping = self.sending.stop.is_cancelled();
            if stopping && awaiting.is_empty() && (self.sending.backlog.is_spool() || self.sending.backlog.held() == 0)
            {
                return Ok(());
            }
            let room = self.config.window.saturating_sub(awaiting.len());
            if room > 0 {
                let records = if awaiting.is_empty() && !stopping {
                    let backlog = Arc::clone(&self.sending.backlog);
                    tokio::task::spawn_blocking(move || {
                        backlog.take(room, Duration::from_millis(100))
                    })
                    .await
                    .unwrap_or_default()
                } else {
                    self.sending.backlog.take(room, Duration::ZERO)
                };
                for record in &records {
                    let (subject, message) = self.message(record);
                    let ack = js
                        .send_publish(subject, message)
                        .await
                        .map_err(|e| e.to_string())?;
                    awaiting.push_back(ack.into_future());
                }
            }
            if let Some(ack) = awaiting.next().await {
                ack.map_err(|e| format!("stream {}: {e}", self.config.stream))?;
                // Whatever else has come back is acknowledged in one go.
                let mut acked = 1;
                while let Some(Some(ack)) = futures_util::FutureExt::now_or_never(awaiting.next())
                {
                    if let Err(e) = ack {
                        self.sending.backlog.ack(acked);
                        self.sent.fetch_add(acked as u64, Ordering::Relaxed);
                        return Err(format!("stream {}: {e}", self.config.stream));
                    }
                    acked += 1;
                }
                self.sending.backlog.ack(acked);
                self.sent.fetch_add(acked as u64, Ordering::Relaxed);
            }
        }
    }

    /// A record's subject and message.
    fn message(&self, record: &Record) -> (String, PublishMessage) {
        let text = String::from_utf8_lossy(&record.body);
        let key = text.split_once(' ').map_or(&*text, |(key, _)| key);
        let mut subject = self.config.subject.clone();
        for token in key.split('.') {
            subject.push('.');
            if token.is_empty() || token.contains(['*', '>']) {
                subject.push_str(&token.replace(['*', '>'], "_"));
                if token.is_empty() {
                    subject.push('_');
                }
            } else {
                subject.push_str(token);
            }
        }
        let body = format!("{} {text}", record.time);
        let message = PublishMessage::build()
            .payload(body.into())
            .message_id(format!("{}-{}", self.sending.backlog.origin(), record.id));
        (subject, message)
    }
}

impl Output for Nats {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&self, key: &str, value: &str, time: u64) {
        if !self.pattern.is_match(key) {
            return;
        }
        self.sending.push(key, value, time);
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        let mut figures = vec![
            ("sent", self.sent.load(Ordering::Relaxed)),
            ("connected", u64::from(self.connected.load(Ordering::Relaxed))),
        ];
        figures.extend(crate::sinks::backlog::figures(
            &self.sending.backlog,
            spud_server::unix_now(),
        ));
        figures
    }

    fn finish(&self, within: Duration) {
        self.sending.finish(within);
    }
}
