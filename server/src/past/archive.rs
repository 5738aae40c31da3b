//! The past in the server's own RRD archive (`[archive] dir`, `--archive`): what the
//! archiver wrote, through rrdcached when it writes through it.

use spud_archive::{rrd::Librrd, Place, Row};

use super::Past;

#[derive(Debug)]
pub struct Archived(pub Place);

impl Past for Archived {
    fn rows(&self, key: &str, from: u64, to: u64, step: u64) -> Result<Vec<Row>, String> {
        let file = self.0.file(key);
        if !file.exists() {
            return Ok(Vec::new());
        }
        let rrd = Librrd::open()?;
        spud_archive::read(rrd, &file, self.0.rrdcached.as_deref(), from, to, step)
            .map_err(|e| format!("the archive: {e}"))
    }
}
