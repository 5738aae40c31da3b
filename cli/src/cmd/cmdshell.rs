//! `spud cmdshell` (the original cmdshell): a restricted shell for one purpose. Given as an
//! ssh forced command, it connects the session's stdin and stdout to the server configured
//! for the command named in `$SPUD_COMMAND` (set per key in `authorized_keys`), and nothing
//! else: any command the client asks for is refused, and no shell is ever run.
//!
//! Its config (`--conf`, the original's format): `name = host:port` lines, `#` comments.
//! Examples for sshd and authorized_keys are in `conf/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CmdshellArgs {
    /// The file naming each command's server (`name = host:port` lines).
    #[arg(long, default_value = "/etc/spud/cmdshell.conf", value_name = "FILE")]
    conf: PathBuf,
    /// What sshd passes a login shell: always refused.
    #[arg(short = 'c', hide = true, value_name = "COMMAND")]
    command: Option<String>,
}

fn refuse(why: impl std::fmt::Display) -> i32 {
    eprintln!("spud cmdshell: {why}");
    1
}

/// `name = host:port` lines.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once('=').and_then(|(name, target)| {
            let (name, target) = (name.trim(), target.trim().replace(' ', ""));
            let (host, port) = target.rsplit_once(':')?;
            let ok =
                !name.is_empty() && !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0);
            ok.then(|| (name.to_ascii_lowercase(), target.clone()))
        });
        match parsed {
            Some(entry) => out.push(entry),
            None => {
                return Err(format!(
                    "line {}: expected `name = host:port`, found {line:?}",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

pub fn run(args: CmdshellArgs) -> i32 {
    if let Some(command) = args.command.filter(|c| !c.trim().is_empty()) {
        return refuse(format!("runs no commands (asked to run {command:?})"));
    }
    if let Ok(command) = std::env::var("SSH_ORIGINAL_COMMAND") {
        if !command.trim().is_empty() {
            return refuse(format!("runs no commands (asked to run {command:?})"));
        }
    }
    let text = match std::fs::read_to_string(&args.conf) {
        Ok(t) => t,
        Err(e) => return refuse(format!("{}: {e}", args.conf.display())),
    };
    let commands = match parse(&text) {
        Ok(c) => c,
        Err(e) => return refuse(format!("{}: {e}", args.conf.display())),
    };
    let name = std::env::var("SPUD_COMMAND")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some((_, target)) = commands.iter().find(|(n, _)| *n == name) else {
        return refuse(format!(
            "no command named {name:?} is configured in {} (SPUD_COMMAND is set per key in authorized_keys)",
            args.conf.display()
        ));
    };
    let server = match TcpStream::connect(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spud cmdshell: cannot connect to {name} at {target}: {e}");
            return 69;
        }
    };
    server.set_nodelay(true).ok();
    let mut to_server = server.try_clone().expect("a socket clones");
    // Client to server until the client is done; server to client until the server is.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_server);
        let _ = to_server.shutdown(std::net::Shutdown::Write);
    });
    let mut from_server = server;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from_server.read(&mut buf) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_config_format() {
        let c = parse("# a comment\n\nreplicator = 127.0.0.1 : 9107\nGoLive=web1:80\n").unwrap();
        assert_eq!(
            c,
            [
                ("replicator".into(), "127.0.0.1:9107".into()),
                ("golive".into(), "web1:80".into())
            ]
        );
        assert!(parse("replicator = nowhere\n")
            .unwrap_err()
            .starts_with("line 1:"));
        assert!(parse("x = host:0\n").is_err());
    }
}
