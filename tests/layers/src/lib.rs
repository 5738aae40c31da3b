//! Reads a crate's `src/` and finds circles among its modules' imports, for the layers test
//! every crate of the workspace runs. A module is a file (a folder's `mod.rs` is the
//! folder). An import is a path that starts with `crate::`, `super::` or `self::`, followed
//! through the `pub use` re-exports of `lib.rs` and of every `mod.rs` to the module that
//! defines the item: `crate::Server` counts as an import of the module that defines
//! `Server`. Circles are looked for twice: between modules, and between the crate's top-level
//! modules (its layers), where an import of `a::x` by `b::y` counts as `b` using `a`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module (`a/b` for `a::b`; "" for the crate root) → the modules it imports.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the crate whose sources are in `src`; `main.rs` (a binary) is left out.
pub fn graph(src: &Path) -> Graph {
    let texts = read(src, src);
    let modules: BTreeSet<&str> = texts.keys().map(String::as_str).collect();
    let exports: BTreeMap<&str, BTreeMap<String, Vec<String>>> = texts
        .iter()
        .map(|(m, t)| (m.as_str(), reexports(t)))
        .collect();
    let path = regex::Regex::new(r"\b(crate|super|self)::(\{[^}]*\}|[\w:]+)").expect("valid");
    let mut graph = Graph::new();
    for (module, text) in &texts {
        let own: Vec<String> = split(module);
        let edges = graph.entry(module.clone()).or_default();
        for found in path.captures_iter(&strip_comments(text)) {
            let base: Vec<String> = match &found[1] {
                "crate" => Vec::new(),
                "super" => own[..own.len().saturating_sub(1)].to_vec(),
                _ => own.clone(),
            };
            let rest = &found[2];
            let paths: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list.trim_end_matches('}').split(',').collect(),
                None => vec![rest],
            };
            for p in paths {
                let parts: Vec<String> = p
                    .split("::")
                    .map(|s| s.trim().split(' ').next().unwrap_or("").to_string())
                    .filter(|s| !s.is_empty() && s != "self" && s != "*")
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                let target = resolve(&modules, &exports, base.clone(), &parts, 0);
                if target != *module && !target.is_empty() {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// The layers test of the crate at `manifest_dir` (its `CARGO_MANIFEST_DIR`): panics naming
/// every circle of its `src/`.
pub fn assert_layered(manifest_dir: &str) {
    let graph = graph(&Path::new(manifest_dir).join("src"));
    assert!(graph.len() > 5, "read {graph:?}");
    let circles = circles(&graph);
    assert!(circles.is_empty(), "circles of imports: {circles:#?}");
}

/// Every circle: first between modules, then between top-level modules. Empty: none.
pub fn circles(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(c) = circle(graph) {
        found.push(format!("modules: {}", c.join(" -> ")));
    }
    let mut top = Graph::new();
    for (from, to) in graph {
        let from_top = top_of(from);
        let edges = top.entry(from_top.clone()).or_default();
        for t in to {
            if top_of(t) != from_top {
                edges.insert(top_of(t));
            }
        }
    }
    if let Some(c) = circle(&top) {
        found.push(format!("layers: {}", c.join(" -> ")));
    }
    found
}

/// The files under `src` longer than `max` lines, with their lengths.
pub fn longer_than(src: &Path, max: usize) -> Vec<String> {
    read(src, src)
        .into_iter()
        .filter_map(|(module, text)| {
            let lines = text.lines().count();
            (lines > max).then(|| format!("{module}: {lines} lines"))
        })
        .collect()
}

fn top_of(module: &str) -> String {
    module.split('/').next().unwrap_or("").to_string()
}

fn split(module: &str) -> Vec<String> {
    module
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn read(src: &Path, dir: &Path) -> BTreeMap<String, String> {
    let mut texts = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            texts.extend(read(src, &path));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).expect("inside src");
        let name = relative.with_extension("").to_string_lossy().into_owned();
        let module = match name.as_str() {
            "main" => continue,
            "lib" => String::new(),
            n => n.strip_suffix("/mod").unwrap_or(n).to_string(),
        };
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        texts.insert(module, text);
    }
    texts
}

/// `pub use a::b::{X, Y as Z};` and `pub(crate) use a::X;`: name → path it stands for.
fn reexports(text: &str) -> BTreeMap<String, Vec<String>> {
    let re = regex::Regex::new(
        r"pub(?:\([\w ]+\))? use ([\w:]+?)(?:::\{([^}]*)\}|::(\w+)(?: as (\w+))?);",
    )
    .expect("valid");
    let mut out = BTreeMap::new();
    for c in re.captures_iter(text) {
        let prefix: Vec<String> = c[1].split("::").map(String::from).collect();
        let names: Vec<(String, String)> = match (c.get(2), c.get(3)) {
            (Some(list), _) => list
                .as_str()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| match n.split_once(" as ") {
                    Some((item, alias)) => (item.trim().to_string(), alias.trim().to_string()),
                    None => (n.to_string(), n.to_string()),
                })
                .collect(),
            (None, Some(item)) => {
                let alias = c.get(4).map_or(item.as_str(), |a| a.as_str());
                vec![(item.as_str().to_string(), alias.to_string())]
            }
            _ => Vec::new(),
        };
        for (item, alias) in names {
            let mut path = prefix.clone();
            path.extend(item.split("::").map(String::from));
            out.insert(alias, path);
        }
    }
    out
}

/// The module that defines what `parts`, read from module `base`, names.
fn resolve(
    modules: &BTreeSet<&str>,
    exports: &BTreeMap<&str, BTreeMap<String, Vec<String>>>,
    mut base: Vec<String>,
    parts: &[String],
    depth: usize,
) -> String {
    for (i, part) in parts.iter().enumerate() {
        let mut candidate = base.clone();
        candidate.push(part.clone());
        if modules.contains(candidate.join("/").as_str()) {
            base = candidate;
            continue;
        }
        let here = base.join("/");
        if let Some(path) = exports.get(here.as_str()).and_then(|e| e.get(part)) {
            if depth < 16 {
                let (start, rest): (Vec<String>, &[String]) = match path[0].as_str() {
                    "crate" => (Vec::new(), &path[1..]),
                    "self" => (base.clone(), &path[1..]),
                    "super" => (base[..base.len().saturating_sub(1)].to_vec(), &path[1..]),
                    _ => (base.clone(), &path[..]),
                };
                let mut rest = rest.to_vec();
                rest.extend(parts[i + 1..].iter().cloned());
                return resolve(modules, exports, start, &rest, depth + 1);
            }
        }
        break;
    }
    base.join("/")
}

/// A path around a circle of `graph`, if it has one.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if done.contains(node) {
            return None;
        }
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The text without `//` comments, so that a path named in prose is not an import.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> tempfile_free::Dir {
        tempfile_free::Dir::new(files)
    }

    /// A throw-away source tree, without a dependency for it.
    mod tempfile_free {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(files: &[(&str, &str)]) -> Dir {
                let dir = std::env::temp_dir().join(format!(
                    "spud-layers-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                for (name, text) in files {
                    let path = dir.join(name);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, text).unwrap();
                }
                Dir(dir)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_circle_through_a_root_reexport_is_seen() {
        let dir = crate_of(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::Thing;\n"),
            ("a.rs", "use crate::b::Other;\npub struct Thing;\n"),
            ("b.rs", "use crate::Thing;\npub struct Other;\n"),
        ]);
        let g = graph(&dir.0);
        assert_eq!(g["b"], BTreeSet::from(["a".to_string()]));
        assert_eq!(circles(&g).len(), 2, "{g:?}");
    }

    #[test]
    fn layers_collapse_folders_and_a_clean_tree_has_no_circle() {
        let dir = crate_of(&[
            ("lib.rs", "mod store;\nmod face;\n"),
            ("store/mod.rs", "mod keys;\npub use keys::Keys;\n"),
            ("store/keys.rs", "pub struct Keys;\n"),
            (
                "face/mod.rs",
                "use crate::store::Keys; // crate::face::x in prose\n",
            ),
        ]);
        let g = graph(&dir.0);
        assert_eq!(g["face"], BTreeSet::from(["store/keys".to_string()]));
        assert!(circles(&g).is_empty());
        let dir = crate_of(&[
            ("lib.rs", "mod store;\nmod face;\n"),
            ("store/mod.rs", "mod keys;\n"),
            ("store/keys.rs", "use crate::face::Face;\n"),
            ("face/mod.rs", "use super::store::keys;\npub struct Face;\n"),
        ]);
        let c = circles(&graph(&dir.0));
        assert!(c.iter().any(|c| c.starts_with("layers:")), "{c:?}");
    }
}
