//! `spud`: client verbs and tools around the stat server. They arrive with the `spud`
//! command issue; until then `nc 127.0.0.1 9107` speaks the protocol by hand.

fn main() {
    eprintln!("spud is not built yet: talk to the server with `nc 127.0.0.1 9107`");
    std::process::exit(2);
}
