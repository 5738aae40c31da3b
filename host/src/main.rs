//! `spud-host`: the gatherer daemon. Its jobs, plugins and reloading arrive with the
//! spud-host issue; for now `spud-server` runs the stat server on its own.

fn main() {
    eprintln!("spud-host is not built yet: run spud-server for the stat server");
    std::process::exit(2);
}
