//! SPUD as a munin node: the munin-node protocol on its own port, so an existing munin master
//! graphs SPUD's keys and teams can adopt SPUD one host at a time.
//!
//! Graphs, worked out per connection (a master's `list`, `config` and `fetch` see one view):
//! each glob of [`MuninConfig::graphs`] is one graph, its fields the keys it matches (a field
//! named after the part the glob's `*`s matched); every other numeric key falls to the
//! default rule, a graph per key prefix with its last component a field (`web1.load.1` →
//! graph `web1_load`, field `_1`). Names are cleaned as munin cleans them. Values are GAUGE
//! unless the `/metrics` rules call the key a counter (then DERIVE, min 0). `warning` and
//! `critical` are the ok ranges of the alert rules watching a key, where a rule's condition
//! has one (`last > 8` → `:8`). Keys under `alert.` are not served.
//!
//! Commands as munin-node answers them: `cap`, `list`, `nodes`, `config`, `fetch`,
//! `version`, `quit`, and `STARTTLS` when the server has a certificate; multi-line answers
//! end with `.`. Read-only. Access as for the stat server: loopback by default; beyond it,
//! mutual TLS (the master presents a certificate the client CA signed, munin's
//! `tls paranoid`; then nothing is answered before STARTTLS), or `open` knowingly.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::faces::metrics::rules::Kind;
use crate::faces::metrics::Exporter;
use crate::{Pattern, Server};

/// The munin face's settings (`[munin]` in gatherer.toml, `--munin*` for spud-server).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuninConfig {
    /// Where to listen (`127.0.0.1:4949`).
    pub listen: Option<std::net::SocketAddr>,
    /// The node's name (default: the machine's host name).
    pub name: Option<String>,
    /// Globs (the protocol's patterns), each one graph of the keys it matches.
    #[serde(default)]
    pub graphs: Vec<String>,
    /// Listen beyond loopback: anyone reaching the port reads every numeric key.
    #[serde(default)]
    pub open: bool,
}

/// One graph: its name and its fields with their keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    /// The key prefix or glob it stands for.
    pub title: String,
    /// (field, key), in field order.
    pub fields: Vec<(String, String)>,
}

/// The graphs over the store's numeric keys now.
pub fn graphs(server: &Server, globs: &[String]) -> Vec<Graph> {
    let patterns: Vec<(String, Pattern)> = globs
        .iter()
        .filter_map(|g| Some((g.clone(), Pattern::new(g).ok()?)))
        .collect();
    let mut by_name: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    server.for_each_newest_number(|key, _, _| {
        if key.starts_with("alert.") {
            return;
        }
        let (title, field) = match patterns.iter().find(|(_, p)| p.is_match(key)) {
            Some((glob, _)) => (glob.as_str(), field_of(glob, key)),
            None => match key.rsplit_once('.') {
                Some((prefix, last)) => (prefix, last.to_string()),
                None => (key, key.to_string()),
            },
        };
        let (_, fields) = by_name
            .entry(clean(title))
            .or_insert_with(|| (title.to_string(), BTreeMap::new()));
        fields
            .entry(clean(&field))
            .or_insert_with(|| key.to_string());
    });
    by_name
        .into_iter()
        .map(|(name, (title, fields))| Graph {
            name,
            title,
            fields: fields.into_iter().collect(),
        })
        .collect()
}

/// What the `*`s of `glob` matched in `key`, joined by `_` (the whole key if it cannot tell).
fn field_of(glob: &str, key: &str) -> String {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() < 2 || !key.starts_with(parts[0]) {
        return key.to_string();
    }
    let mut rest = &key[parts[0].len()..];
    let mut matched = Vec::new();
    for (n, literal) in parts[1..].iter().enumerate() {
        let last = n == parts.len() - 2;
        let at = if literal.is_empty() {
            if last {
                rest.len()
            } else {
                0
            }
        } else if last {
            match rest.rfind(literal) {
                Some(at) => at,
                None => return key.to_string(),
            }
        } else {
            match rest.find(literal) {
                Some(at) => at,
                None => return key.to_string(),
            }
        };
        matched.push(&rest[..at]);
        rest = &rest[at + literal.len()..];
    }
    matched.join("_")
}

/// A name munin takes: letters, digits and `_`, not starting with a digit (`1` → `_1`).
pub fn clean(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The munin face's TLS: the server's certificate, and whether clients must present one
/// (a client CA is configured): then STARTTLS comes before anything else.
#[derive(Clone)]
pub struct MuninTls {
    pub config: Arc<rustls::ServerConfig>,
    pub mutual: bool,
}

/// Binds the munin listener, refusing an address beyond loopback unless mutual TLS guards
/// it or `open` says so.
pub async fn bind(config: &MuninConfig, tls: Option<&MuninTls>) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    let addr = config
        .listen
        .unwrap_or_else(|| "127.0.0.1:4949".parse().expect("an address"));
    let guarded = tls.is_some_and(|t| t.mutual);
    if !addr.ip().is_loopback() && !config.open && !guarded {
        anyhow::bail!(
            "refusing the munin node on {addr} without authentication: anyone reaching it \
             would read every numeric key. Give the server a TLS client CA (munin's `tls \
             paranoid` with a client certificate), listen on loopback (an SSH tunnel from \
             the master), or say open = true (--munin-open) knowingly"
        );
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("the munin node cannot listen on {addr}"))
}

/// Serves the munin protocol on `listener` until `shutdown`.
pub async fn serve(
    server: Server,
    exporter: Arc<Exporter>,
    config: MuninConfig,
    tls: Option<MuninTls>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let name = config.name.clone().unwrap_or_else(host_name);
    let config = Arc::new(config);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let session = Session {
            server: server.clone(),
            exporter: Arc::clone(&exporter),
            config: Arc::clone(&config),
            name: name.clone(),
            graphs: None,
        };
        tokio::spawn(session.run(stream, tls.clone()));
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spud".to_string())
}

/// What ends a run of commands.
enum Next {
    Close,
    StartTls,
}

struct Session {
    server: Server,
    exporter: Arc<Exporter>,
    config: Arc<MuninConfig>,
    name: String,
    /// Worked out at the first command that needs them.
    graphs: Option<Vec<Graph>>,
}

impl Session {
    async fn run(mut self, stream: TcpStream, tls: Option<MuninTls>) {
        let mut plain = BufReader::new(stream);
        let greeting = format!("# munin node at {}\n", self.name);
        if plain.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        let required = tls.as_ref().is_some_and(|t| t.mutual);
        match self
            .commands(&mut plain, false, tls.is_some(), required)
            .await
        {
            Next::Close => {}
            Next::StartTls => {
                let Some(tls) = tls else { return };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
                match acceptor.accept(plain.into_inner()).await {
                    Ok(secure) => {
                        let mut secure = BufReader::new(secure);
                        self.commands(&mut secure, true, false, false).await;
                    }
                    Err(e) => tracing::warn!("munin node: TLS handshake refused: {e}"),
                }
            }
        }
    }

    /// Answers commands until the client quits, goes away, or asks for TLS (`starttls`
    /// offered). With `tls_required`, only `cap`, `starttls` and `quit` are answered.
    async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut BufReader<S>,
        secure: bool,
        starttls: bool,
        tls_required: bool,
    ) -> Next {
        let mut line = String::new();
        loop {
            line.clear();
            // A line longer than this is no munin command: the connection ends.
            match (&mut *stream).take(4096).read_line(&mut line).await {
                Ok(0) | Err(_) => return Next::Close,
                Ok(_) if !line.ends_with('\n') && line.len() >= 4096 => return Next::Close,
                Ok(_) => {}
            }
            let mut words = line.split_whitespace();
            let command = words.next().unwrap_or("").to_ascii_lowercase();
            let argument = words.next();
            if command == "starttls" && starttls {
                let _ = stream.write_all(b"TLS OK\n").await;
                let _ = stream.flush().await;
                return Next::StartTls;
            }
            if tls_required && !matches!(command.as_str(), "cap" | "quit" | ".") {
                let _ = stream.write_all(b"# I require TLS. Closing.\n").await;
                return Next::Close;
            }
            let reply = match command.as_str() {
                "quit" | "." => return Next::Close,
                "cap" => "cap multigraph dirtyconfig\n".to_string(),
                "nodes" => format!("{}\n.\n", self.name),
                "version" => format!(
                    "munins node on {} version: 2.0.73 (spud {})\n",
                    self.name,
                    env!("CARGO_PKG_VERSION")
                ),
                "list" => {
                    let names: Vec<String> = self.graphs().iter().map(|g| g.name.clone()).collect();
                    format!("{}\n", names.join(" "))
                }
                "config" => self.config(argument.unwrap_or("")),
                "fetch" => self.fetch(argument.unwrap_or("")),
                _ => "# Unknown command. Try cap, list, nodes, config, fetch, version or quit\n"
                    .to_string(),
            };
            // Over TLS, munin's master reads a record as a line, as munin-node writes them:
            // one record per line.
            let chunks: Vec<&str> = if secure {
                reply.split_inclusive('\n').collect()
            } else {
                vec![&reply]
            };
            for chunk in chunks {
                if stream.write_all(chunk.as_bytes()).await.is_err()
                    || stream.flush().await.is_err()
                {
                    return Next::Close;
                }
            }
        }
    }

    fn graphs(&mut self) -> &[Graph] {
        let (server, globs) = (&self.server, &self.config.graphs);
        self.graphs.get_or_insert_with(|| graphs(server, globs))
    }

    fn graph(&mut self, name: &str) -> Option<Graph> {
        self.graphs().iter().find(|g| g.name == name).cloned()
    }

    fn config(&mut self, name: &str) -> String {
        let Some(graph) = self.graph(name) else {
            return "# Unknown service\n.\n".to_string();
        };
        let mut out = format!(
            "graph_title {}\ngraph_category spud\ngraph_info Keys of the SPUD stat server\n",
            graph.title
        );
        let ranges = self.ranges(&graph);
        for (field, key) in &graph.fields {
            out.push_str(&format!("{field}.label {key}\n"));
            let counter = self
                .exporter
                .map(key)
                .is_some_and(|m| m.family.kind == Kind::Counter);
            if counter {
                out.push_str(&format!("{field}.type DERIVE\n{field}.min 0\n"));
            }
            for (level, range) in ranges.get(key).into_iter().flatten() {
                out.push_str(&format!("{field}.{level} {range}\n"));
            }
        }
        out.push_str(".\n");
        out
    }

    fn fetch(&mut self, name: &str) -> String {
        let Some(graph) = self.graph(name) else {
            return "# Unknown service\n.\n".to_string();
        };
        // Each value with its sample's own time, as munin-async gives them.
        let mut out = String::new();
        for (field, key) in &graph.fields {
            match self.server.newest_number_at(key) {
                Some((time, v)) => out.push_str(&format!("{field}.value {time}:{v}\n")),
                None => out.push_str(&format!("{field}.value U\n")),
            }
        }
        out.push_str(".\n");
        out
    }

    /// Per key: munin's `warning`/`critical` ok ranges from the alert rules watching it.
    fn ranges(&self, graph: &Graph) -> BTreeMap<String, Vec<(&'static str, String)>> {
        let mut out = BTreeMap::new();
        let Some(alerts) = crate::alerts::Alerts::of(&self.server) else {
            return out;
        };
        let rules = alerts.rules();
        for (_, key) in &graph.fields {
            for rule in rules.iter().filter(|r| r.keys.is_match(key)) {
                for (level, condition) in [("warning", &rule.warn), ("critical", &rule.crit)] {
                    let Some((lo, hi)) = condition
                        .as_ref()
                        .and_then(|c| c.quiet_band(f64::INFINITY, f64::NEG_INFINITY))
                    else {
                        continue;
                    };
                    let side = |v: f64| {
                        if v.is_finite() {
                            v.to_string()
                        } else {
                            String::new()
                        }
                    };
                    let entry: &mut Vec<(&'static str, String)> =
                        out.entry(key.clone()).or_default();
                    entry.push((level, format!("{}:{}", side(lo), side(hi))));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn graphs_by_prefix_and_by_glob() {
        let server = Server::new(Config::default());
        for (k, v) in [
            ("web1.load.1", "0.5"),
            ("web1.load.5", "0.7"),
            ("memcached.a:11211.curr_items", "5"),
            ("memcached.b:11211.curr_items", "7"),
            ("web1.status", "up"),
            ("alert.x.web1.load.1", "ok"),
            ("lonely", "3"),
        ] {
            server.set(k, v, None).unwrap();
        }
        let g = graphs(&server, &["memcached.*.curr_items".to_string()]);
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["lonely", "memcached___curr_items", "web1_load"]);
        assert_eq!(g[2].title, "web1.load");
        assert_eq!(
            g[1].fields,
            [
                (
                    "a_11211".to_string(),
                    "memcached.a:11211.curr_items".to_string()
                ),
                (
                    "b_11211".to_string(),
                    "memcached.b:11211.curr_items".to_string()
                )
            ]
        );
        assert_eq!(
            g[2].fields[0],
            ("_1".to_string(), "web1.load.1".to_string())
        );
        assert_eq!(
            g[2].fields[1],
            ("_5".to_string(), "web1.load.5".to_string())
        );
        assert_eq!(field_of("a.*.b.*", "a.x.b.y"), "x_y");
    }
}
