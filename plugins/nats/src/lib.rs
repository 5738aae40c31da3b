//! Reads samples from a NATS JetStream stream (where hosts' `[[output]] type = "nats"` puts
//! them) into the server this job runs in, each with its original time and key (stored as
//! given, not under the job's name).
//!
//! It reads through a durable consumer: after a restart of this server, or an outage of
//! NATS, it goes on where it stopped. Two central servers, each with its own `durable`, both
//! get everything (high availability); several sharing one `durable` split the work
//! (scale). A message is acknowledged only some milliseconds after it was stored, by then
//! written to the server's log, so a crash of this server loses nothing: what was not
//! acknowledged is delivered again, and the server takes a repeated sample once.
//!
//! ```toml
//! [[job]]
//! name = "fleet"
//! plugin = "nats"
//! interval = "10s"          # how often host.job.fleet.{received,bad} and fleet.pending are stored
//! options = { servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"], stream = "SPUD", durable = "central-a" }
//! ```
//!
//! Options: `servers` (default `nats://127.0.0.1:4222`), `stream` (default `SPUD`),
//! `durable` (the consumer's name, default `spud`), `subject` (only these subjects, a NATS
//! filter such as `spud.web.>`; default all of the stream), and authentication as the
//! output takes it: `token`, `user` and `password`, `creds`, `tls_ca`, `tls_cert` and
//! `tls_key`. `token`, `password` and `creds` may be `env:NAME` or `file:PATH`, and
//! `tls_key` `file:PATH` (`$CREDENTIALS_DIRECTORY` first: see `spud_access::SecretRef`).

use std::path::PathBuf;

use spud_access::SecretRef;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, Message};
use futures_util::StreamExt;
use spud_plugin_api::kit::intake::Intake;
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Service};

/// How long a stored sample waits before its message is acknowledged: the server's log has
/// written it out by then. Its writer runs within a millisecond of a set on an idle machine;
/// on a loaded one (the fleet drill: 3 NATS nodes, 22 hosts, 2 cores) 5 ms was not enough,
/// and a central server killed right after lost what it had acknowledged. A quarter of a
/// second costs nothing but acknowledgements in flight (`MAX_ACK_PENDING` covers 800,000 a
/// second) and NATS redelivers only after 30 s.
const ACK_AFTER: Duration = Duration::from_millis(250);

/// Messages delivered and not yet acknowledged, at most (the consumer's `max_ack_pending`):
/// enough for the acknowledgements' lag at a million samples a second.
const MAX_ACK_PENDING: i64 = 200_000;

/// The NATS JetStream reader.
pub struct Nats;

#[derive(Deserialize, Clone)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    #[serde(default = "default_servers")]
    servers: Vec<String>,
    #[serde(default = "default_stream")]
    stream: String,
    #[serde(default = "default_durable")]
    durable: String,
    #[serde(default)]
    subject: String,
    token: Option<SecretRef>,
    user: Option<String>,
    password: Option<SecretRef>,
    creds: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_stream() -> String {
    "SPUD".into()
}
fn default_durable() -> String {
    "spud".into()
}

struct Reader {
    job: String,
    options: Options,
    interval: Duration,
    host: Host,
    intake: Arc<Intake>,
}

impl Plugin for Nats {
    const NAME: &'static str = "nats";
    const DESCRIPTION: &'static str = "Samples from a NATS JetStream stream";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let o: Options = job.options()?;
        if o.servers.is_empty() {
            return Err("options: servers is empty".into());
        }
        for server in &o.servers {
            async_nats::ServerAddr::from_str(server)
                .map_err(|e| format!("options: servers: {server:?}: {e}"))?;
        }
        if o.durable.is_empty() || o.durable.contains(['.', '*', '>', ' ']) {
            return Err(format!(
                "options: durable {:?}: a name without dots, blanks or wildcards",
                o.durable
            ));
        }
        if o.user.is_some() != o.password.is_some() {
            return Err("options: user and password go together".into());
        }
        if o.tls_cert.is_some() != o.tls_key.is_some() {
            return Err("options: tls_cert and tls_key go together".into());
        }
        Ok(Collector::service(Reader {
            job: job.name.clone(),
            options: o,
            interval: job.interval,
            intake: Arc::new(Intake::new(&job.name, host.clone())),
            host,
        }))
    }
}

/// Why reading stopped: the job was stopped, or the connection or consumer failed.
enum Ended {
    Stopped,
    Failed(String),
}

impl Service for Reader {
    fn run(&mut self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let watcher = self.host.clone();
        let intake = Arc::clone(&self.intake);
        let interval = self.interval;
        // The host's stop request, seen from a thread of its own; the figures go out with it.
        let stopper = std::thread::spawn(move || {
            while !watcher.stop_requested(interval) {
                intake.publish();
            }
            let _ = stop_tx.send(true);
        });
        runtime.block_on(self.read_with_retries(stop_rx));
        let _ = stopper.join();
        self.intake.publish();
        Ok(())
    }
}

impl Reader {
    async fn read_with_retries(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        let mut said: Option<String> = None;
        loop {
            match self.read(&mut stop, &mut said).await {
                Ended::Stopped => return,
                Ended::Failed(why) => {
                    if said.as_deref() != Some(why.as_str()) {
                        self.host.warn(format!("{why}; trying again"));
                        said = Some(why);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        let o = &self.options;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("spud nats job {}", self.job))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        // Secrets are read at each connection, never kept in the options.
        if let Some(creds) = &o.creds {
            let text =
                spud_access::read_secret_setting(creds).map_err(|e| format!("creds: {e}"))?;
            options = options
                .credentials(text.expose())
                .map_err(|e| format!("creds {}: {e}", creds.display()))?;
        }
        if let Some(token) = &o.token {
            let token = token.resolve(None).map_err(|e| format!("token: {e}"))?;
            options = options.token(token.expose().to_string());
        }
        if let (Some(user), Some(password)) = (&o.user, &o.password) {
            let password = password
                .resolve(None)
                .map_err(|e| format!("password: {e}"))?;
            options = options.user_and_password(user.clone(), password.expose().to_string());
        }
        if let Some(ca) = &o.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
            let key = spud_access::anchor_path(std::path::Path::new("."), key);
            let key = match key.to_str().and_then(|k| k.strip_prefix("file:")) {
                Some(path) => PathBuf::from(path),
                None if key.to_str().is_some_and(|k| k.starts_with("env:")) => {
                    return Err("tls_key: env: is not taken here; give file:PATH".into())
                }
                None => key,
            };
            options = options.add_client_certificate(cert.clone(), key);
        }
        options
            .connect(o.servers.as_slice())
            .await
            .map_err(|e| format!("NATS {}: {e}", o.servers.join(",")))
    }

    /// Connects, finds the stream and its consumer, and stores what it delivers until
    /// something fails or the job stops.
    async fn read(
        &self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        said: &mut Option<String>,
    ) -> Ended {
        let o = &self.options;
        let client = match self.connect().await {
            Ok(client) => client,
            Err(e) => return Ended::Failed(e),
        };
        let js = jetstream::new(client);
        let stream = match js.get_stream(&o.stream).await {
            Ok(stream) => stream,
            Err(e) => return Ended::Failed(format!("stream {}: {e}", o.stream)),
        };
        let consumer: consumer::PullConsumer = match stream
            .get_or_create_consumer(
                &o.durable,
                consumer::pull::Config {
                    durable_name: Some(o.durable.clone()),
                    // Explicit: a reader sharing the consumer acknowledges its own messages.
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    filter_subject: o.subject.clone(),
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => return Ended::Failed(format!("consumer {} of {}: {e}", o.durable, o.stream)),
        };
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => return Ended::Failed(format!("consumer {}: {e}", o.durable)),
        };
        if said.take().is_some() {
            self.host.info(format!(
                "reading stream {} through consumer {} again",
                o.stream, o.durable
            ));
        }
        // Acknowledged a tick after being stored: `newest` were stored during this tick,
        // `ripe` during the one before.
        let mut newest: Vec<Message> = Vec::new();
        let mut ripe: Vec<Message> = Vec::new();
        let mut tick = tokio::time::interval(ACK_AFTER);
        let mut figures = tokio::time::interval(self.interval);
        loop {
            let waiting = !newest.is_empty() || !ripe.is_empty();
            tokio::select! {
                _ = stop.changed() => {
                    tokio::time::sleep(ACK_AFTER).await;
                    for message in ripe.iter().chain(&newest) {
                        let _ = message.ack().await;
                    }
                    return Ended::Stopped;
                }
                _ = tick.tick(), if waiting => {
                    for message in ripe.drain(..) {
                        if let Err(e) = message.ack().await {
                            return Ended::Failed(format!("acknowledging: {e}"));
                        }
                    }
                    std::mem::swap(&mut ripe, &mut newest);
                }
                _ = figures.tick() => {
                    let mut consumer = consumer.clone();
                    if let Ok(info) = consumer.info().await {
                        self.host.set("pending", info.num_pending);
                    }
                }
                next = messages.next() => match next {
                    Some(Ok(message)) => {
                        self.store(&message);
                        if !waiting {
                            tick.reset();
                        }
                        newest.push(message);
                    }
                    Some(Err(e)) => return Ended::Failed(format!("consumer {}: {e}", o.durable)),
                    None => return Ended::Failed(format!("consumer {}: the stream of messages ended", o.durable)),
                },
            }
        }
    }

    /// Stores one message's sample: `TIME KEY VALUE`.
    fn store(&self, message: &Message) {
        let body = String::from_utf8_lossy(&message.payload);
        let mut parts = body.splitn(3, ' ');
        let (time, key, value) = (parts.next(), parts.next(), parts.next());
        match (time.and_then(|t| t.parse::<u64>().ok()), key, value) {
            (Some(time), Some(key), Some(value)) if !key.is_empty() => {
                self.host.set_absolute_at(key, value, time);
                self.intake.received(1);
            }
            _ => self.intake.bad(
                "message",
                format_args!(
                    "a message on {} is not `TIME KEY VALUE`: {:?}",
                    message.subject,
                    body.chars().take(80).collect::<String>()
                ),
            ),
        }
    }
}

export_plugin!(Nats);
