//! collectd's `types.db`: the names of each type's data sources (`load` has `shortterm`,
//! `midterm`, `longterm`). The network packets carry each value's kind but not its name.

use std::collections::HashMap;

/// Data source names by type.
#[derive(Default, Debug)]
pub struct TypesDb {
    names: HashMap<String, Vec<String>>,
}

impl TypesDb {
    /// Reads `text` (`type  ds:KIND:min:max, ds2:KIND:min:max`); `#` starts a comment.
    /// Lines it cannot read are returned by number, and left out.
    pub fn parse(text: &str) -> (TypesDb, Vec<usize>) {
        let mut db = TypesDb::default();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, sources)) = line.split_once(char::is_whitespace) else {
                bad.push(i + 1);
                continue;
            };
            let names: Option<Vec<String>> = sources
                .split(',')
                .map(|ds| {
                    ds.trim()
                        .split(':')
                        .next()
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                })
                .collect();
            match names {
                Some(names) => {
                    db.names.insert(name.to_string(), names);
                }
                None => bad.push(i + 1),
            }
        }
        (db, bad)
    }

    /// The name of data source `index` of `kind` among `count`: from types.db when it
    /// knows the type with that many sources; otherwise `value` for a lone value and the
    /// index for several.
    pub fn source_name(&self, kind: &str, index: usize, count: usize) -> String {
        match self.names.get(kind) {
            Some(names) if names.len() == count => names[index].clone(),
            _ if count == 1 => "value".to_string(),
            _ => index.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_file() {
        let (db, bad) = TypesDb::parse(
            "# comment\nload  shortterm:GAUGE:0:5000, midterm:GAUGE:0:5000, longterm:GAUGE:0:5000\nmemory value:GAUGE:0:U\nbroken\n",
        );
        assert_eq!(bad, vec![4]);
        assert_eq!(db.source_name("load", 1, 3), "midterm");
        assert_eq!(db.source_name("memory", 0, 1), "value");
        assert_eq!(db.source_name("unknown", 1, 2), "1");
        assert_eq!(db.source_name("load", 0, 2), "0");
    }
}
