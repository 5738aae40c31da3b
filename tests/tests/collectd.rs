//! The collectd collector with real collectd daemons pointed at it: the network plugin plain,
//! signed (with a good and a wrong password) and encrypted; and bad packets.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use spud_tests::collectd::Collectd;
use spud_tests::SpudHost;

const T: Duration = Duration::from_secs(20);

fn job(name: &str, listen: SocketAddr, options: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"collectd\"\ninterval = \"1s\"\noptions = {{ listen = \"{listen}\"{options} }}\n\n"
    )
}

fn udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_real_collectd_network_plugin_plain_signed_and_encrypted() {
    let (plain, signed, encrypted) = (udp_port(), udp_port(), udp_port());
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("passwd");
    std::fs::write(&auth, "# collectd's AuthFile\nalice: s3cret\n").unwrap();
    let auth = auth.display();
    let config = job("plain", plain, "")
        + &job(
            "signed",
            signed,
            &format!(", security_level = \"Sign\", auth_file = \"{auth}\""),
        )
        + &job(
            "sealed",
            encrypted,
            &format!(", security_level = \"Encrypt\", auth_file = \"{auth}\""),
        );
    let host = SpudHost::start(&["collectd"], &config);

    let _plain = Collectd::start("web1.example.com", &Collectd::network(plain, ""));
    let credentials = "    SecurityLevel Sign\n    Username \"alice\"\n    Password \"s3cret\"";
    let _signed = Collectd::start("signer", &Collectd::network(signed, credentials));
    let wrong = "    SecurityLevel Sign\n    Username \"alice\"\n    Password \"guess\"";
    let _forger = Collectd::start("forger", &Collectd::network(signed, wrong));
    let sealed = "    SecurityLevel Encrypt\n    Username \"alice\"\n    Password \"s3cret\"";
    let _sealed = Collectd::start("sealer", &Collectd::network(encrypted, sealed));
    // Plain traffic at an encrypting listener is refused.
    let _plain_to_sealed = Collectd::start("bare", &Collectd::network(encrypted, ""));

    for prefix in ["plain.web1_example_com", "signed.signer", "sealed.sealer"] {
        let load: f64 = host
            .wait_for(&format!("{prefix}.load.load.shortterm"), T, |_| true)
            .parse()
            .unwrap();
        assert!(
            (load - spud_tests::loadavg1()).abs() < 1.0,
            "{prefix}: {load} against {}",
            spud_tests::loadavg1()
        );
        let used: f64 = host
            .wait_for(&format!("{prefix}.memory.memory-used"), T, |_| true)
            .parse()
            .unwrap();
        assert!(used > 1e6, "{prefix}: memory used {used}");
    }
    let log = host.process.wait_log("bad signature", T);
    host.process.wait_log("unencrypted values refused", T);
    assert!(
        log.contains("the signature of \"alice\" does not match"),
        "{log}"
    );
    let mut c = host.connect();
    for refused in [
        "signed.forger.load.load.shortterm",
        "sealed.bare.load.load.shortterm",
    ] {
        assert_eq!(
            c.history(refused),
            Vec::<String>::new(),
            "{refused} was taken"
        );
    }
    host.wait_for("host.job.signed.bad", T, |v| v.parse::<u64>().unwrap() >= 1);
    host.wait_for("host.job.sealed.bad", T, |v| v.parse::<u64>().unwrap() >= 1);
}

#[test]
fn truncated_and_garbage_packets_are_counted_and_the_rest_carries_on() {
    let listen = udp_port();
    let host = SpudHost::start(&["collectd"], &job("collectd", listen, ""));
    let _collectd = Collectd::start("steady", &Collectd::network(listen, ""));
    host.wait_for("collectd.steady.load.load.shortterm", T, |_| true);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let host_part = b"\x00\x00\x00\x09steady\x00";
    let bad: Vec<Vec<u8>> = vec![
        vec![0x00],                     // shorter than a part header
        b"\x00\x02\x00\xff".to_vec(),   // a part longer than the packet
        b"\x00\x00\x00\x06ab".to_vec(), // a string without its NUL
        [
            &host_part[..],
            b"\x00\x06\x00\x0f\x00\x01\x09\0\0\0\0\0\0\0\0",
        ]
        .concat(), // value kind 9
        vec![0xAB; 1400],               // noise
    ];
    for packet in &bad {
        sender.send_to(packet, listen).unwrap();
    }
    host.wait_for("host.job.collectd.bad", T, |v| {
        v.parse::<u64>().unwrap() >= bad.len() as u64
    });
    let log = host.process.log();
    assert_eq!(log.matches("truncated packet:").count(), 1, "{log}");
    assert_eq!(log.matches("malformed part:").count(), 1, "{log}");
    // A flood of noise: counted, memory flat, collectd's values keep coming.
    let rss = host.process.rss_kib();
    for _ in 0..20_000 {
        sender.send_to(&[0xAB; 1400], listen).unwrap();
    }
    host.wait_for("host.job.collectd.bad", T, |v| {
        v.parse::<u64>().unwrap() > 1000
    });
    assert!(host.process.rss_kib().saturating_sub(rss) < 64 * 1024);
    let before = host
        .connect()
        .history("collectd.steady.load.load.shortterm")
        .len();
    host.wait_for("collectd.steady.memory.memory-used", T, |_| true);
    std::thread::sleep(Duration::from_millis(2500));
    let after = host
        .connect()
        .history("collectd.steady.load.load.shortterm")
        .len();
    assert!(
        after > before,
        "collectd's values stopped: {before} then {after}"
    );
}
