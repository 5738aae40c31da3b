//! `spud wrap -k KEY -- CMD ARGS...` (the original wrapper): runs a command and records it
//! under KEY: `status` (started, then finished or failed), every line it prints on stdout or
//! stderr as `output` (an empty line is stored as one space: the protocol has no empty
//! values; the original lost them. A line's leading blanks are lost: in the protocol they
//! separate the key from the value), `exit_code` and `duration` (seconds). Its output still
//! reaches the terminal unless `--quiet`. It exits with the command's own exit code (the
//! original always exited 143), and runs the command even when the server is unreachable,
//! saying on stderr what could not be recorded.

use spud_server::client::endpoint::Endpoint;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct WrapArgs {
    /// Where to record: KEY.status, KEY.output, KEY.exit_code, KEY.duration.
    #[arg(short, long)]
    key: String,
    /// Record the output without passing it through.
    #[arg(long)]
    quiet: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Records what it can; remembers what it could not.
struct Recorder {
    client: Option<Client>,
    lost: usize,
    why: Option<String>,
}

impl Recorder {
    fn record(&mut self, key: &str, value: &str) {
        let value = if value.is_empty() { " " } else { value };
        let sent = match &mut self.client {
            Some(c) => c
                .send(&format!("qset {key} {value}"))
                .map_err(|e| e.to_string()),
            None => Err(String::new()),
        };
        if let Err(why) = sent {
            if self.client.take().is_some() {
                self.why = Some(why);
            }
            self.lost += 1;
        }
    }

    /// The last sample with a reply: once it is answered, everything before it is stored.
    fn finish(&mut self, key: &str, value: &str) {
        let Some(client) = &mut self.client else {
            self.lost += 1;
            return;
        };
        let answered = client
            .send(&format!("set {key} {value}"))
            .and_then(|()| loop {
                match client.line()? {
                    Some(l) if l.starts_with("OK") => return Ok(()),
                    Some(l) => eprintln!("spud wrap: the server refused a sample: {l}"),
                    None => return Err(crate::client::ClientError::Refused("closed".into())),
                }
            });
        if let Err(e) = answered {
            self.lost += 1;
            self.why.get_or_insert(e.to_string());
        }
    }
}

pub fn run(server: &Endpoint, args: WrapArgs) -> i32 {
    let key = args.key;
    if !spud_plugin_api::is_valid_key(&key) {
        eprintln!("spud wrap: {key:?} is not a key: keys are letters, digits and - _ . :");
        return 2;
    }
    let (client, why) = match Client::connect(server) {
        Ok(c) => {
            c.set_timeout(Duration::from_secs(5));
            (Some(c), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let mut rec = Recorder {
        client,
        lost: 0,
        why,
    };
    rec.record(&format!("{key}.status"), "started");

    let started = Instant::now();
    let child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spud wrap: cannot run {}: {e}", args.command[0]);
            rec.record(
                &format!("{key}.output"),
                &format!("cannot run {}: {e}", args.command[0]),
            );
            rec.record(&format!("{key}.exit_code"), "127");
            rec.finish(&format!("{key}.status"), "failed");
            report_lost(&rec, server);
            return 127;
        }
    };

    // Both streams, line by line, in the order they come.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let readers: Vec<_> = [
        (
            false,
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        ),
        (true, Box::new(child.stderr.take().expect("piped"))),
    ]
    .into_iter()
    .map(|(is_err, stream)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = tx.send((is_err, std::mem::take(&mut line)));
            }
        })
    })
    .collect();
    drop(tx);
    for (is_err, line) in rx {
        if !args.quiet {
            let _ = if is_err {
                std::io::stderr().write_all(&line)
            } else {
                std::io::stdout().write_all(&line)
            };
        }
        let text = String::from_utf8_lossy(&line);
        rec.record(
            &format!("{key}.output"),
            text.trim_end_matches(['\n', '\r']),
        );
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait();
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        }),
        Err(_) => 1,
    };
    rec.record(&format!("{key}.exit_code"), &code.to_string());
    rec.record(
        &format!("{key}.duration"),
        &format!("{:.3}", started.elapsed().as_secs_f64()),
    );
    rec.finish(
        &format!("{key}.status"),
        if code == 0 { "finished" } else { "failed" },
    );
    report_lost(&rec, server);
    code
}

fn report_lost(rec: &Recorder, server: &Endpoint) {
    if rec.lost > 0 {
        eprintln!(
            "spud wrap: {} samples were not recorded at {server}: {}",
            rec.lost,
            rec.why.as_deref().unwrap_or("the connection failed")
        );
    }
}
