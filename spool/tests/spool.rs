//! The spool against a real directory: order, ids and acknowledgements survive a restart; a
//! torn tail is cut; a full spool drops its oldest and counts them.

use std::time::Duration;

use spud_spool::Backlog;

const NOW: Duration = Duration::ZERO;

fn bodies(records: &[spud_spool::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect()
}

#[test]
fn records_survive_a_restart_in_order_with_their_ids_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Backlog::spool(dir.path(), 1 << 30).unwrap();
    let origin = spool.origin().to_string();
    for i in 0..10u64 {
        spool.push(1000 + i, format!("k{i} {i}").as_bytes());
    }
    let first = spool.take(4, NOW);
    spool.ack(3);
    let ids: Vec<u64> = spool.take(100, NOW).iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 6);
    drop(spool);

    let spool = Backlog::spool(dir.path(), 1 << 30).unwrap();
    assert_eq!(spool.origin(), origin, "a spool keeps its name");
    assert_eq!(spool.held(), 7);
    assert_eq!(spool.oldest_time(), Some(1003));
    let again = spool.take(100, NOW);
    assert_eq!(
        bodies(&again),
        (3..10).map(|i| format!("k{i} {i}")).collect::<Vec<_>>()
    );
    assert_eq!(again[0].id, first[3].id, "a record keeps its id");
    assert_eq!(
        again.iter().map(|r| r.time).collect::<Vec<_>>(),
        (1003..1010).collect::<Vec<_>>()
    );
    spool.ack(7);
    assert_eq!(spool.held(), 0);
    assert_eq!(spool.oldest_time(), None);
}

#[test]
fn a_rewind_takes_the_unacknowledged_again_first() {
    for backlog in [Backlog::memory(100), {
        let dir = tempfile::tempdir().unwrap().keep();
        Backlog::spool(&dir, 1 << 20).unwrap()
    }] {
        for i in 0..5u64 {
            backlog.push(i, format!("{i}").as_bytes());
        }
        let taken = backlog.take(3, NOW);
        backlog.ack(1);
        backlog.rewind();
        let again = backlog.take(10, NOW);
        assert_eq!(bodies(&again), ["1", "2", "3", "4"]);
        assert_eq!(again[0].id, taken[1].id);
        assert_eq!(backlog.taken(), 4);
        backlog.ack(4);
        assert!(backlog.drained(Duration::from_millis(10)));
    }
}

#[test]
fn a_torn_tail_is_cut_and_the_whole_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Backlog::spool(dir.path(), 1 << 30).unwrap();
        for i in 0..3u64 {
            spool.push(i, b"whole");
        }
    }
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "spool"))
        .unwrap();
    // Half a record, as a crash mid-write leaves it.
    let mut bytes = std::fs::read(&segment).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[21, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&segment, &bytes).unwrap();

    let spool = Backlog::spool(dir.path(), 1 << 30).unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, whole);
    assert_eq!(spool.held(), 3);
    spool.push(9, b"after");
    assert_eq!(
        bodies(&spool.take(10, NOW)),
        ["whole", "whole", "whole", "after"]
    );
}

#[test]
fn a_full_spool_drops_its_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    // Segments are 64 KiB at least: a 256 KiB bound holds about four.
    let spool = Backlog::spool(dir.path(), 256 * 1024).unwrap();
    let body = [b'x'; 100];
    let n = 10_000u64; // a million bytes with headers
    for i in 0..n {
        spool.push(i, &body);
    }
    spool.sync();
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 256 * 1024 + 4096, "{on_disk} bytes on disk");
    assert_eq!(spool.held() + spool.dropped(), n);
    assert!(spool.dropped() > n / 2, "{} dropped", spool.dropped());
    let kept = spool.take(usize::MAX, NOW);
    assert_eq!(kept.len() as u64, spool.held());
    // The newest are kept, in order.
    assert_eq!(kept.last().unwrap().time, n - 1);
    assert!(kept.windows(2).all(|w| w[1].time == w[0].time + 1));
}

#[test]
fn a_full_memory_backlog_drops_the_oldest_waiting_not_those_in_flight() {
    let backlog = Backlog::memory(3);
    for i in 0..3u64 {
        backlog.push(i, format!("{i}").as_bytes());
    }
    let in_flight = backlog.take(1, NOW);
    backlog.push(3, b"3");
    backlog.push(4, b"4");
    assert_eq!(backlog.dropped(), 2);
    backlog.ack(in_flight.len());
    assert_eq!(bodies(&backlog.take(10, NOW)), ["3", "4"]);
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Backlog::spool(dir.path(), 1 << 20).unwrap();
    let body = [b'y'; 1000];
    for i in 0..1000u64 {
        spool.push(i, &body);
    }
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "spool")
            })
            .count()
    };
    assert!(segments() > 5, "{} segments", segments());
    let taken = spool.take(usize::MAX, NOW);
    spool.ack(taken.len());
    assert_eq!(segments(), 1);
    assert_eq!(spool.held(), 0);
}

#[test]
fn a_directory_is_shared_within_a_process_and_refused_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let first = Backlog::spool(dir.path(), 1 << 20).unwrap();
    first.push(1, b"one");
    let second = Backlog::spool(dir.path(), 1 << 21).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    // Another process: flock is per open file description, so a fresh open of the lock
    // file from here stands in for it.
    let lock = std::fs::File::open(dir.path().join("acked")).unwrap();
    use std::os::fd::AsRawFd;
    let taken = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_ne!(taken, 0, "the spool's lock is held");
}
