//! What a munin plugin prints, for `config` and for a fetch: graphs (one, or several after
//! `multigraph NAME` lines), each with graph attributes (`graph_title …`), and fields with
//! attributes (`load.label load`, `load.type GAUGE`) and values (`load.value 0.93`, `U` for
//! unknown, `EPOCH:VALUE` with its own time).

/// One graph of a plugin's output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// The plugin's name, or the `multigraph` name.
    pub name: String,
    /// `graph_*` attributes in order.
    pub attributes: Vec<(String, String)>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Field {
    /// Cleaned as munin cleans field names.
    pub name: String,
    /// `label`, `type`, `min`, `max`, `warning`, `critical`, `cdef`, … in order.
    pub attributes: Vec<(String, String)>,
    /// The value line, if there was one: None for `U`, with the time if it had one.
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    pub number: Option<f64>,
    pub time: Option<u64>,
}

impl Field {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plugin's output: its graphs and the lines that were not understood.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub graphs: Vec<Graph>,
    pub bad: Vec<String>,
}

impl Parsed {
    /// Whether any field carried a value (a `config` answer with dirtyconfig).
    pub fn has_values(&self) -> bool {
        self.graphs
            .iter()
            .flat_map(|g| &g.fields)
            .any(|f| f.value.is_some())
    }
}

/// munin's `clean_fieldname`: a first character that is not a letter or `_`, and every
/// character that is not a letter, digit or `_`, become `_`.
pub fn clean_fieldname(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses `text`, the output of `plugin` (`graph` names the graph before any `multigraph`).
pub fn parse(plugin: &str, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut graph = Graph {
        name: plugin.to_string(),
        ..Graph::default()
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("multigraph ") {
            if !graph.attributes.is_empty() || !graph.fields.is_empty() {
                parsed.graphs.push(graph);
            }
            graph = Graph {
                name: name.trim().to_string(),
                ..Graph::default()
            };
            continue;
        }
        let Some((name, rest)) = line.split_once(char::is_whitespace) else {
            parsed.bad.push(line.to_string());
            continue;
        };
        let rest = rest.trim();
        if name.starts_with("graph_") || name == "host_name" || name == "update_rate" {
            graph.attributes.push((name.to_string(), rest.to_string()));
            continue;
        }
        let Some((field, attribute)) = name.rsplit_once('.') else {
            parsed.bad.push(line.to_string());
            continue;
        };
        let field = clean_fieldname(field);
        let at = match graph.fields.iter().position(|f| f.name == field) {
            Some(at) => at,
            None => {
                graph.fields.push(Field {
                    name: field,
                    ..Field::default()
                });
                graph.fields.len() - 1
            }
        };
        if attribute == "value" {
            match value(rest) {
                Some(v) => graph.fields[at].value = Some(v),
                None => parsed.bad.push(line.to_string()),
            }
        } else {
            graph.fields[at]
                .attributes
                .push((attribute.to_string(), rest.to_string()));
        }
    }
    if !graph.attributes.is_empty() || !graph.fields.is_empty() {
        parsed.graphs.push(graph);
    }
    parsed
}

/// `0.93`, `U`, `1700000000:12`.
fn value(text: &str) -> Option<Value> {
    let (time, number) = match text.split_once(':') {
        Some((time, number)) => (Some(time.parse::<u64>().ok()?), number),
        None => (None, text),
    };
    let number = match number {
        "U" => None,
        n => Some(n.parse::<f64>().ok().filter(|v| v.is_finite())?),
    };
    Some(Value { number, time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_values_of_plain_and_multigraph_plugins() {
        let p = parse(
            "load",
            "graph_title Load average\ngraph_vlabel load\nload.label load\nload.value 0.93\n",
        );
        assert_eq!(p.graphs.len(), 1);
        let g = &p.graphs[0];
        assert_eq!(
            (g.name.as_str(), g.attributes[0].1.as_str()),
            ("load", "Load average")
        );
        assert_eq!(g.fields[0].attribute("label"), Some("load"));
        assert_eq!(
            g.fields[0].value,
            Some(Value {
                number: Some(0.93),
                time: None
            })
        );
        assert!(p.has_values());

        let p = parse(
            "diskstats",
            "multigraph diskstats_latency\nvda_avgwait.value 0\n\nmultigraph diskstats_utilization\nvda_util.value U\nx-y.value 1700000000:5\n",
        );
        let names: Vec<&str> = p.graphs.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["diskstats_latency", "diskstats_utilization"]);
        assert_eq!(
            p.graphs[1].fields[0].value,
            Some(Value {
                number: None,
                time: None
            })
        );
        assert_eq!(p.graphs[1].fields[1].name, "x_y");
        assert_eq!(
            p.graphs[1].fields[1].value,
            Some(Value {
                number: Some(5.0),
                time: Some(1_700_000_000)
            })
        );
    }

    #[test]
    fn garbage_is_set_aside() {
        let p = parse("x", "hello\nload.value abc\nload.value 1\n");
        assert_eq!(p.bad, ["hello", "load.value abc"]);
        assert_eq!(p.graphs[0].fields[0].value.unwrap().number, Some(1.0));
        assert_eq!(clean_fieldname("1a.b-c"), "_a_b_c");
    }
}
