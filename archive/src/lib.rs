//! The RRD archive of SPUD's keys, as the original's rrd-storage kept it: one RRD file per
//! key, named as the original named it, so stock `rrdtool fetch` and `rrdtool graph` read
//! them and archives the original wrote carry on. Written through librrd, loaded when an
//! archive opens (`rrd`), so nothing that does not archive needs it.
//!
//! RRD files take one value per second, in increasing time: the last value of a second
//! wins, and a sample not newer than its file's last update is skipped (writing history
//! that overlaps what is archived already costs nothing).

pub mod rrd;

use std::collections::HashMap;
use std::path::PathBuf;

use rrd::Librrd;

/// The original's step: one GAUGE value every 5 s, unknown after 10 s without one.
pub const STEP: u64 = 5;

/// The original's consolidations (AVERAGE), and the same with MIN and MAX so a chart can
/// draw the spread a step hides. Files made before MIN and MAX came keep their AVERAGE only.
pub const LAYOUT: [&str; 19] = [
    "DS:val:GAUGE:10:U:U",
    "RRA:AVERAGE:0.5:1:1440",     // 5 s points for 2 hours
    "RRA:AVERAGE:0.5:60:288",     // 5-minute points for a day
    "RRA:AVERAGE:0.5:360:336",    // 30-minute points for a week
    "RRA:AVERAGE:0.5:720:720",    // 1-hour points for a month
    "RRA:AVERAGE:0.5:17280:365",  // 1-day points for a year
    "RRA:AVERAGE:0.5:120960:520", // 1-week points for 10 years
    "RRA:MIN:0.5:1:1440",
    "RRA:MIN:0.5:60:288",
    "RRA:MIN:0.5:360:336",
    "RRA:MIN:0.5:720:720",
    "RRA:MIN:0.5:17280:365",
    "RRA:MIN:0.5:120960:520",
    "RRA:MAX:0.5:1:1440",
    "RRA:MAX:0.5:60:288",
    "RRA:MAX:0.5:360:336",
    "RRA:MAX:0.5:720:720",
    "RRA:MAX:0.5:17280:365",
    "RRA:MAX:0.5:120960:520",
];

/// The file a key is archived in: the original's name (`:` → `_`, no extension). Keys are
/// `[-A-Za-z0-9_.:]+`, so only a name of dots (`..`) needs more: its first dot becomes
/// `%2E`. Anything else that could not be a file name is escaped the same way, should the
/// key syntax ever widen.
pub fn file_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        match b {
            b':' => out.push('_'),
            b'.' if i == 0 && key.bytes().all(|c| c == b'.') => out.push_str("%2E"),
            b'/' | b'%' | 0..=0x20 | 0x7f.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// Where an archive is kept: its folder, and rrdcached's address when updates go through
/// it (`unix:/path`, a socket's path, or `host:port`, as `rrdtool --daemon` takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub dir: PathBuf,
    pub rrdcached: Option<String>,
}

impl Place {
    /// The file `key` is archived in.
    pub fn file(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }
}

/// What one write-out did.
#[derive(Default, Debug)]
pub struct Figures {
    pub written: u64,
    /// Files written directly because rrdcached failed (the first failure is in `daemon_error`).
    pub around_daemon: usize,
    pub daemon_error: Option<String>,
    pub files: usize,
    pub created: usize,
    pub skipped: u64,
    pub failed: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} samples to {} files ({} new), {} not newer than their file, {} files failed",
            self.written, self.files, self.created, self.skipped, self.failed
        )
    }
}

/// An archive directory: which files exist and their last update, and the samples that
/// wait for them.
pub struct Archive {
    rrd: &'static Librrd,
    dir: PathBuf,
    /// Per key: the file and the time of its last update.
    files: HashMap<String, (PathBuf, i64)>,
    /// Per key: samples not yet written, in arrival order.
    pending: HashMap<String, Vec<(u64, f64)>>,
    /// rrdcached's address, when updates go through it.
    daemon: Option<String>,
}

impl Archive {
    /// The archive at `place` (its folder must exist), librrd loaded; updates go through
    /// its rrdcached when given, and straight into the files otherwise, or while rrdcached
    /// fails.
    pub fn open(place: Place) -> Result<Archive, String> {
        Ok(Archive {
            rrd: Librrd::open()?,
            dir: place.dir,
            files: HashMap::new(),
            pending: HashMap::new(),
            daemon: place.rrdcached,
        })
    }

    /// Keeps a sample for the next write-out.
    pub fn add(&mut self, key: String, time: u64, value: f64) {
        self.pending.entry(key).or_default().push((time, value));
    }

    /// Keeps a key's samples, in arrival order, for the next write-out.
    pub fn add_all(&mut self, key: String, samples: Vec<(u64, f64)>) {
        if samples.is_empty() {
            return;
        }
        match self.pending.get_mut(&key) {
            Some(waiting) => waiting.extend(samples),
            None => {
                self.pending.insert(key, samples);
            }
        }
    }

    /// The time of the newest sample written for `key` by this archive (None before its
    /// first write-out: the file, if any, is read then).
    pub fn newest(&self, key: &str) -> Option<u64> {
        self.files.get(key).map(|(_, t)| (*t).max(0) as u64)
    }

    /// Keys with samples waiting.
    pub fn pending_keys(&self) -> usize {
        self.pending.len()
    }

    /// Writes every waiting sample, file by file; `each` hears of every file as it is done
    /// (its key, and the error if it failed).
    pub fn flush(&mut self, mut each: impl FnMut(&str, Result<(), &str>)) -> Figures {
        let pending = std::mem::take(&mut self.pending);
        let mut figures = Figures::default();
        for (key, samples) in pending {
            match self.write(&key, samples, &mut figures) {
                Ok(()) => {
                    figures.files += 1;
                    each(&key, Ok(()));
                }
                Err(e) => {
                    figures.failed += 1;
                    each(&key, Err(&e));
                }
            }
        }
        figures
    }

    fn write(
        &mut self,
        key: &str,
        mut samples: Vec<(u64, f64)>,
        figures: &mut Figures,
    ) -> Result<(), String> {
        // One value per second, the last to arrive; in increasing time.
        samples.reverse();
        samples.sort_by_key(|&(t, _)| t);
        samples.dedup_by_key(|&mut (t, _)| t);
        let first = samples[0].0 as i64;
        let (path, last) = match self.files.get(key) {
            Some((path, last)) => (path.clone(), *last),
            None => {
                let path = self.dir.join(file_name(key));
                let last = if path.exists() {
                    if let Some(daemon) = &self.daemon {
                        // What rrdcached holds of it is newer than the file.
                        let _ = self.rrd.flush_cached(daemon, &path);
                    }
                    self.rrd.last(&path)?
                } else {
                    let defs: Vec<String> = LAYOUT.iter().map(|s| s.to_string()).collect();
                    self.rrd.create(&path, STEP, first - 1, &defs)?;
                    figures.created += 1;
                    first - 1
                };
                (path, last)
            }
        };
        let updates: Vec<String> = samples
            .iter()
            .filter(|&&(t, _)| t as i64 > last)
            .map(|(t, v)| format!("{t}:{v}"))
            .collect();
        figures.skipped += (samples.len() - updates.len()) as u64;
        let newest = samples.last().map_or(last, |&(t, _)| (t as i64).max(last));
        if !updates.is_empty() {
            match &self.daemon {
                Some(daemon) => {
                    if let Err(e) = self.rrd.update_cached(daemon, &path, &updates) {
                        figures.around_daemon += 1;
                        figures.daemon_error.get_or_insert(e);
                        self.rrd.update(&path, &updates)?;
                    }
                }
                None => self.rrd.update(&path, &updates)?,
            }
            figures.written += updates.len() as u64;
        }
        self.files.insert(key.to_string(), (path, newest));
        Ok(())
    }
}

/// One row of an archive: `[start, start + step)` and its consolidations (None: unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub start: u64,
    pub step: u64,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// A key's archived figures over `[from, to)`, as rows of the finest resolution that
/// covers it with steps of at least `step`. A file made before MIN and MAX were kept gives
/// the average for all three.
/// With rrdcached at `daemon`, it first writes what it holds of the file.
pub fn read(
    rrd: &Librrd,
    path: &std::path::Path,
    daemon: Option<&str>,
    from: u64,
    to: u64,
    step: u64,
) -> Result<Vec<Row>, String> {
    if let Some(daemon) = daemon {
        rrd.flush_cached(daemon, path)?;
    }
    let avg = rrd.fetch(path, "AVERAGE", from, to, step)?;
    let other = |cf| {
        rrd.fetch(path, cf, from, to, step)
            .ok()
            .filter(|r| r.start == avg.start && r.step == avg.step)
            .map(|r| r.values)
    };
    let min = other("MIN").unwrap_or_else(|| avg.values.clone());
    let max = other("MAX").unwrap_or_else(|| avg.values.clone());
    Ok(avg
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| Row {
            start: avg.start + i as u64 * avg.step,
            step: avg.step,
            avg: *v,
            min: min.get(i).copied().flatten(),
            max: max.get(i).copied().flatten(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_with_its_minimum_and_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(Place {
            dir: dir.path().to_path_buf(),
            rrdcached: None,
        })
        .expect("librrd: scripts/setup-test-deps installs rrdtool");
        let t0 = 1_700_000_000 / STEP * STEP;
        // Two values a step, 5 s apart: 10 and 20 in each 5 s step, every step.
        for i in 0..120u64 {
            archive.add(
                "a:b".into(),
                t0 + i * 5 / 2 * 2 + 1 + (i % 2),
                if i % 2 == 0 { 10.0 } else { 20.0 },
            );
        }
        let figures = archive.flush(|_, r| r.unwrap());
        assert_eq!(figures.created, 1);
        let rrd = Librrd::open().unwrap();
        let rows = read(rrd, &dir.path().join("a_b"), None, t0 + 50, t0 + 250, 5).unwrap();
        assert!(rows.len() >= 30, "{rows:?}");
        for row in rows.iter().filter(|r| r.avg.is_some()) {
            let (avg, min, max) = (row.avg.unwrap(), row.min.unwrap(), row.max.unwrap());
            assert_eq!(row.step, 5, "at {}", row.start);
            assert!((10.0..=20.0).contains(&avg), "{rows:?}");
            assert!(min <= avg && avg <= max, "{rows:?}");
        }
    }

    #[test]
    fn file_names_are_the_originals_where_it_could() {
        assert_eq!(
            file_name("memcached.web1:11211.curr_items"),
            "memcached.web1_11211.curr_items"
        );
        assert_eq!(file_name("a/b%c d"), "a%2Fb%25c%20d");
        assert_eq!(file_name(".."), "%2E.");
        assert_eq!(file_name("..x"), "..x");
        assert_eq!(file_name("é"), "%C3%A9");
    }
}
