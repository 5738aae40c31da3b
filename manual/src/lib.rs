//! Manual pages and shell completions, generated from a binary's clap definition, so they
//! never drift from its `--help`. Each binary answers `--generate-docs DIR` (hidden; the
//! package script calls it) by writing, for itself and each of its visible subcommands:
//! `DIR/man/NAME.1`, `DIR/man/NAME-VERB.1`, and `DIR/completions/NAME.bash`, `_NAME` (zsh),
//! `NAME.fish`.

use std::path::Path;

use clap::Command;
use clap_complete::Shell;

/// The flag the binaries answer.
pub const FLAG: &str = "--generate-docs";

/// If this process was asked `--generate-docs DIR`, writes `cmd`'s pages and completions
/// there and exits; otherwise returns.
pub fn serve(cmd: impl FnOnce() -> Command) {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(FLAG)) {
        return;
    }
    let Some(dir) = args.next() else {
        eprintln!("{FLAG} needs a directory");
        std::process::exit(2);
    };
    match write(cmd(), Path::new(&dir)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{FLAG}: {e}");
            std::process::exit(1);
        }
    }
}

/// Writes the manual pages and completions of `cmd` under `dir`.
pub fn write(cmd: Command, dir: &Path) -> std::io::Result<()> {
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_string();
    page(&cmd, &name, &man)?;
    for verb in cmd
        .get_subcommands()
        .filter(|v| !v.is_hide_set() && v.get_name() != "help")
    {
        let verb = verb.clone().name(format!("{name}-{}", verb.get_name()));
        page(&verb, verb.get_name(), &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
    }
    Ok(())
}

fn page(cmd: &Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)
}
