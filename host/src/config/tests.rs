//! gatherer.toml's parsing and checks.
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("gatherer.toml"))
}

#[test]
fn the_documented_example_parses() {
    let c = parse(
        r#"
[server]
listen = "127.0.0.1:9107"

[host]
plugins = "../plugins"
interval = "5s"
timeout = "3s"

[vars]
site = "ams1"

[[job]]
name = "memcached.local"
plugin = "memcached"
interval = "5s"
options = { address = "127.0.0.1:11211" }

[[helper]]
plugin = "discovery"
interval = "30s"
options = { file = "targets.toml" }
"#,
    )
    .unwrap();
    assert_eq!(
        c.jobs[0].options["address"].as_str(),
        Some("127.0.0.1:11211")
    );
    assert_eq!(c.vars_as_text(Path::new("gatherer.toml"))["site"], "ams1");
    assert_eq!(c.job_specs()[0].timeout, Duration::from_secs(3));
    assert_eq!(
        c.plugins_dir(Path::new("/etc/spud/gatherer.toml")),
        Path::new("/etc/spud/../plugins")
    );
}

#[test]
fn outputs_are_chosen_by_type_and_checked() {
    let ok = "[[output]]\ntype = \"prometheus_remote_write\"\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n";
    let config = parse(ok).unwrap();
    assert_eq!(config.outputs[0].name(0), "output1");
    let e = parse("[[output]]\ntype = \"carrier_pigeon\"\nurl = \"x\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("unknown variant `carrier_pigeon`"),
        "{:?}",
        e.problems
    );
    let e = parse(&format!("{ok}urll = \"typo\"\n")).unwrap_err();
    assert!(
        e.problems[0].contains("unknown field `urll`"),
        "{:?}",
        e.problems
    );
    let e =
        parse("[[output]]\ntype = \"prometheus_remote_write\"\nurl = \"ftp://x\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("[[output]] output1: url \"ftp://x\" must start with http://"),
        "{:?}",
        e.problems
    );
}

#[test]
fn zero_timeouts_are_refused() {
    let e = parse("[[job]]\nname = \"a\"\nplugin = \"test\"\ntimeout = \"0s\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("job \"a\": timeout must be more than 0"),
        "{:?}",
        e.problems
    );
    let e = parse("[host]\ntimeout = \"0s\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("[host] timeout must be more than 0"),
        "{:?}",
        e.problems
    );
}

#[test]
fn unknown_fields_name_file_line_and_field() {
    let e = parse("[host]\ninterval = \"5s\"\nintervall = \"1s\"\n").unwrap_err();
    let line = &e.problems[0];
    assert!(
        line.starts_with("gatherer.toml:3: unknown field `intervall`"),
        "{line}"
    );
}

#[test]
fn bad_durations_and_syntax_are_located() {
    let e = parse("[[job]]\nname = \"a\"\nplugin = \"test\"\ninterval = \"soon\"\n").unwrap_err();
    assert!(
        e.problems[0].starts_with("gatherer.toml:4:"),
        "{}",
        e.problems[0]
    );
    let e = parse("[[job]\nname = \"a\"\n").unwrap_err();
    assert!(
        e.problems[0].starts_with("gatherer.toml:1:"),
        "{}",
        e.problems[0]
    );
}

#[test]
fn jobs_are_checked() {
    let e = parse(
        "[[job]]\nname = \"a b\"\nplugin = \"t\"\n[[job]]\nname = \"ok\"\nplugin = \"t\"\n[[job]]\nname = \"ok\"\nplugin = \"t\"\n",
    )
    .unwrap_err();
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
    assert!(e.problems[0].contains("gatherer.toml:2: job name \"a b\""));
    assert!(e.problems[1].contains("defined twice"));
}

#[test]
fn listen_and_remote_exclude_each_other() {
    let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nremote = \"x:1\"\n").unwrap_err();
    assert!(e.problems[0].contains("gatherer.toml:3: [server] has both"));
}

#[test]
fn an_archive_belongs_to_the_embedded_server() {
    let ok = parse("[archive]\ndir = \"../data/archive\"\n").unwrap();
    assert_eq!(
        ok.archive.dir.as_deref(),
        Some(std::path::Path::new("../data/archive"))
    );
    let e = parse("[server]\nremote = \"x:1\"\n\n[archive]\ndir = \"a\"\n").unwrap_err();
    assert!(
        e.problems[0].contains(
            "[archive] is the embedded server's; with a remote server, give --archive DIR"
        ),
        "{:?}",
        e.problems
    );
    let e = parse("[archive]\nrrdcached = \"unix:/run/rrdcached.sock\"\n").unwrap_err();
    assert!(e.problems[0].contains("it needs dir"), "{:?}", e.problems);
    let e = parse("[history]\npromql = \"victoria:8428\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("http:// or https:// URL"),
        "{:?}",
        e.problems
    );
    let ok = parse("[history]\npromql = \"http://victoria:8428\"\n").unwrap();
    assert_eq!(ok.history.promql.as_deref(), Some("http://victoria:8428"));
    let e = parse("[archive]\ndirectory = \"a\"\n").unwrap_err();
    assert!(e.problems[0].contains("directory"), "{:?}", e.problems);
}

/// The loader fuzzed: the example config and the seed corpus in `fuzz/corpus/`, mutated
/// (lines dropped, doubled or swapped, bytes replaced, fragments inserted). Whatever the
/// text, loading never panics, and a refusal names the file in every line. A bounded
/// run in the test command; failures found are kept in `proptest-regressions/`.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn corpus() -> &'static [(String, Vec<u8>)] {
        static CORPUS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
        CORPUS.get_or_init(read_corpus)
    }

    fn read_corpus() -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }

    fn example() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/gatherer.example.toml"),
        )
        .unwrap()
    }

    /// Parses `text` as `fuzzed.toml`; every problem must name that file.
    fn load(text: &str) -> Result<(), TestCaseError> {
        match Config::parse(text, Path::new("fuzzed.toml")) {
            Ok(config) => {
                // What the host does next with a loaded config must hold up too (the diff
                // of every shipped config: `diff::tests`).
                let _ = config.job_specs();
                let _ = config.server.embedded.clone().relative_to(Path::new("."));
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(p.starts_with("fuzzed.toml"), "{p}");
                }
            }
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Drop(usize),
        Double(usize),
        Swap(usize, usize),
        Byte(usize, char),
        Insert(usize, &'static str),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let fragment = prop_oneof![
            Just("[[job]]\n"),
            Just("[server]\n"),
            Just("[host]\n"),
            Just("[plugin.x]\n"),
            Just("isolation = \"process\"\n"),
            Just("interval = \"0s\"\n"),
            Just("timeout = \"99999999999d\"\n"),
            Just("name = \"\"\n"),
            Just("options = { a = [1, { b = 2 }] }\n"),
            Just("\""),
            Just("]"),
            Just("="),
            Just("\u{0}"),
            Just("é"),
        ];
        prop_oneof![
            any::<usize>().prop_map(Edit::Drop),
            any::<usize>().prop_map(Edit::Double),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
            (any::<usize>(), any::<char>()).prop_map(|(a, c)| Edit::Byte(a, c)),
            (any::<usize>(), fragment).prop_map(|(a, f)| Edit::Insert(a, f)),
        ]
    }

    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for e in edits {
            if lines.is_empty() {
                lines.push(String::new());
            }
            let n = lines.len();
            match e {
                Edit::Drop(i) => {
                    lines.remove(i % n);
                }
                Edit::Double(i) => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Edit::Swap(a, b) => lines.swap(a % n, b % n),
                Edit::Byte(i, c) => {
                    let line = &mut lines[i % n];
                    let chars: Vec<char> = line.chars().collect();
                    if !chars.is_empty() {
                        let at = i / n % chars.len();
                        *line = chars[..at]
                            .iter()
                            .chain(std::iter::once(c))
                            .chain(&chars[at + 1..])
                            .collect();
                    }
                }
                Edit::Insert(i, f) => {
                    let line = &mut lines[i % n];
                    let at = line
                        .char_indices()
                        .nth(i / n % (line.len() + 1))
                        .map_or(line.len(), |(b, _)| b);
                    line.insert_str(at, f);
                }
            }
        }
        lines.join("\n")
    }

    #[test]
    fn the_seed_corpus_loads_or_is_refused_with_the_file_named() {
        for (name, bytes) in corpus().iter() {
            let path = std::env::temp_dir().join(format!("spud-fuzz-{}.toml", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            match Config::load(&path) {
                Ok(_) => {}
                Err(e) => {
                    for p in &e.problems {
                        assert!(p.starts_with(&path.display().to_string()), "{name}: {p}");
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
            load(&String::from_utf8_lossy(bytes)).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn mutated_configs_load_or_are_refused_with_the_file_named(
            seed in 0usize..16,
            edits in proptest::collection::vec(edit(), 1..6),
        ) {
            let seeds = corpus();
            let text = if seed >= seeds.len() {
                example()
            } else {
                String::from_utf8_lossy(&seeds[seed].1).into_owned()
            };
            load(&apply(&text, &edits))?;
        }
    }
}

#[test]
fn a_spool_serves_one_destination_and_a_nats_output_is_checked() {
    let e = parse(
        "[server]\nremote = \"x:1\"\nspool = \"q\"\n\n[[output]]\ntype = \"nats\"\nname = \"n\"\nspool = \"q\"\n",
    )
    .unwrap_err();
    assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
    assert!(
        e.problems[0].contains("[[output]] n and [server] remote both spool to q"),
        "{}",
        e.problems[0]
    );
    let e = parse("[server]\nspool = \"q\"\n").unwrap_err();
    assert!(
        e.problems[0].contains("keeps samples for a `remote` server"),
        "{:?}",
        e.problems
    );
    let e = parse(
        "[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = [\"nats://h:4222\"]\nsubject = \"a..b\"\n",
    )
    .unwrap_err();
    assert!(
        e.problems[0].contains("gatherer.toml:4: [[output]] n: subject \"a..b\""),
        "{}",
        e.problems[0]
    );
    let ok = parse("[[output]]\ntype = \"nats\"\nspool = \"a\"\n\n[[output]]\ntype = \"nats\"\nspool = \"b\"\n");
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.problems));
}
