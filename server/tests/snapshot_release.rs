//! A snapshot written by the release before the bit-packed history (made by that release's
//! `spud-server --state`, then stopped) loads into this one: every key's samples, times and
//! exact bytes, as the file holds them.

use std::collections::HashMap;
use std::path::Path;

use spud_server::store::snapshot;
use spud_server::Config;

const FIXTURE: &str = "tests/fixtures/release-2026-12-02.snapshot";

#[test]
fn a_snapshot_of_the_previous_release_loads_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let file = std::fs::read(&path).unwrap();
    let mut want: HashMap<String, Vec<(u64, Vec<u8>)>> = HashMap::new();
    let mut order = Vec::new();
    for line in file.split(|&b| b == b'\n') {
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut parts = line.splitn(3, |&b| b == b' ');
        let time = std::str::from_utf8(parts.next().unwrap()).unwrap();
        let key = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
        let value = parts.next().unwrap_or_default().to_vec();
        if !want.contains_key(&key) {
            order.push(key.clone());
        }
        want.entry(key)
            .or_default()
            .push((time.parse().unwrap(), value));
    }
    assert!(order.len() > 20, "the fixture holds {} keys", order.len());
    let server = snapshot::load(&path, Config::default()).unwrap();
    for key in &order {
        let mut samples = want[key].clone();
        samples.reverse();
        let got: Vec<(u64, Vec<u8>)> = server
            .get(key)
            .unwrap()
            .into_iter()
            .map(|s| (s.time, s.value.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, samples, "{key}");
    }
    assert_eq!(want["fx.mixed"].len(), 100);
    assert!(want["fx.value18"].iter().any(|(_, v)| v == b"\xff\xfe\x01"));
}
