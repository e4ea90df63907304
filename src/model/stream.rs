//! Streamed reading of a JSON input: the bulk of a large config, its `storage.files`, is never
//! held as text nor as a JSON tree.
//!
//! The document is read (from a file, through a small buffer, or from memory) into a JSON tree
//! as usual, except at the places a config's files can be — `storage.files` of a bare Ignition
//! config, of `spec.config`, and of `items[i].spec.config` in a List. There each file is read
//! into its typed form ([`StreamedFile`], the shape every Ignition 3.x version shares),
//! normalised at once (its source decoded within the load's budget, its path checked) and only
//! the result kept; the tree gets an empty list in its place. The rest of the document (small)
//! then goes through the general loader with those files handed in.
//!
//! This is only a faster road to the same result: on anything it does not expect (a file with
//! another key or a value of another type, a problem in a file, a key given twice on the way to
//! the files, files at a place the document's kind does not read, an error anywhere in the
//! input) it gives up, and the caller loads the input the general way (from a fresh budget), so
//! warnings, errors and their order are those of the general loader. YAML is always loaded the
//! general way.

use super::ignition::{FileStream, PreFiles, StreamedFile};
use super::load::{Budget, Loaded};
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;

/// Loads one JSON document from `de`; `None` when the general loader must do it (see the
/// module docs). On `None`, `budget` is as it was.
pub(crate) fn load<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    origin: &str,
    budget: &Budget,
) -> Option<Loaded> {
    let saved = budget.snapshot();
    let result = (|| {
        let cx = RefCell::new(Cx {
            budget,
            pre: HashMap::new(),
        });
        let doc = Node {
            at: At::Root,
            cx: &cx,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        let mut pre = cx.into_inner().pre;
        let loaded = super::load::parse_document_pre(doc, origin, budget, &mut pre).ok()?;
        // Files read at a place the document's kind does not read: not what the general
        // loader would do.
        pre.is_empty().then_some(loaded)
    })();
    if result.is_none() {
        budget.restore(saved);
    }
    result
}

/// Loads every MachineConfig of the JSON in `bytes` (already known to start with `{`).
pub(crate) fn load_slice(bytes: &[u8], origin: &str, budget: &Budget) -> Option<Loaded> {
    load(serde_json::Deserializer::from_slice(bytes), origin, budget)
}

/// [`load_slice`] from a reader.
pub(crate) fn load_reader(r: impl std::io::Read, origin: &str, budget: &Budget) -> Option<Loaded> {
    load(serde_json::Deserializer::from_reader(r), origin, budget)
}

struct Cx<'b> {
    budget: &'b Budget,
    /// The files read, by the field path of their config (`spec.config`, `items[2].spec.config`,
    /// or empty for a bare Ignition config).
    pre: HashMap<String, PreFiles>,
}

/// Where in the document a value is, as far as the files' places go.
#[derive(Clone)]
enum At {
    Root,
    Items,
    Item(usize),
    Spec(String),
    Config(String),
    Storage(String),
    Files(String),
}

impl At {
    /// The place of the member `key` of an object here; `None`: nothing of interest below.
    fn child(&self, key: &str) -> Option<At> {
        let config = |spec: &str| super::ignition::join(spec, "config");
        match (self, key) {
            (At::Root, "spec") => Some(At::Spec("spec".into())),
            (At::Root, "storage") => Some(At::Storage(String::new())),
            (At::Root, "items") => Some(At::Items),
            (At::Item(i), "spec") => Some(At::Spec(format!("items[{i}].spec"))),
            (At::Spec(s), "config") => Some(At::Config(config(s))),
            (At::Config(c), "storage") => Some(At::Storage(c.clone())),
            (At::Storage(c), "files") => Some(At::Files(c.clone())),
            _ => None,
        }
    }
}

struct Node<'c, 'b> {
    at: At,
    cx: &'c RefCell<Cx<'b>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match &self.at {
            At::Files(at) => {
                let mut stream = FileStream::new(at, self.cx.borrow().budget);
                while let Some(f) = seq.next_element::<StreamedFile>()? {
                    if !stream.push(f) {
                        return Err(A::Error::custom("a file has a problem"));
                    }
                }
                let mut cx = self.cx.borrow_mut();
                if cx.pre.insert(at.clone(), stream.finish()).is_some() {
                    return Err(A::Error::custom("files given twice"));
                }
                Ok(Value::Array(Vec::new()))
            }
            At::Items => {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element_seed(Node {
                    at: At::Item(out.len()),
                    cx: self.cx,
                })? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            _ => {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = match self.at.child(&key) {
                Some(at) => {
                    if out.contains_key(&key) {
                        return Err(A::Error::custom("key given twice"));
                    }
                    map.next_value_seed(Node { at, cx: self.cx })?
                }
                None => map.next_value::<Value>()?,
            };
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::{Budget, Limits, parse_general};

    /// A file with every key the streamed road reads, and a gzip-compressed one.
    fn files() -> String {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped\n").unwrap();
        let gz = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            gz.finish().unwrap(),
        );
        format!(
            r#"[
              {{"path": "/etc/a.conf", "contents": {{"source": "data:,a%20b",
                "verification": {{"hash": "sha256-c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65"}}}},
                "mode": 384, "overwrite": false, "user": {{"id": 5}}, "group": {{"name": "wheel"}}}},
              {{"path": "/etc/b.conf", "contents": {{"source": "data:;base64,{gz}", "compression": "gzip"}},
                "mode": null, "user": null}},
              {{"path": "/etc/c.conf"}},
              {{"path": "/etc/d.conf", "contents": {{}}, "append": []}}
            ]"#
        )
    }

    fn ignition(files: &str) -> String {
        format!(
            r#"{{"ignition": {{"version": "3.2.0"}},
                "storage": {{"files": {files}, "directories": [{{"path": "/etc/dir"}}]}},
                "systemd": {{"units": [{{"name": "a.service", "enabled": true}}]}}}}"#
        )
    }

    fn machine_config(name: &str, files: &str) -> String {
        format!(
            r#"{{"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
                "metadata": {{"name": "{name}", "labels": {{"machineconfiguration.openshift.io/role": "worker"}}}},
                "spec": {{"config": {}, "kernelArguments": ["a=1"], "fips": false}}}}"#,
            ignition(files)
        )
    }

    /// The streamed road's result, which must exist, and the general road's, which it must be.
    fn both(json: &str) {
        let budget = Budget::new(Limits::default());
        let streamed = super::load_slice(json.as_bytes(), "in.json", &budget)
            .expect("the streamed road takes this input");
        let general = parse_general(json.as_bytes(), "in.json", &Budget::new(Limits::default()))
            .expect("valid");
        assert_eq!(streamed, general);
        assert_eq!(budget.snapshot(), (3 + 7, false), "decoded bytes counted");
        assert!(
            streamed
                .configs
                .iter()
                .all(|c| c.spec.config.files.len() == 4)
        );
    }

    #[test]
    fn streamed_files_load_as_the_general_loader_loads_them() {
        let f = files();
        both(&machine_config("a", &f));
        both(&ignition(&f));
        both(&format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [{}]}}"#,
            machine_config("b", &f)
        ));
    }

    #[test]
    fn the_streamed_road_gives_up_on_what_only_the_general_one_says() {
        let budget = Budget::new(Limits::default());
        let f = files();
        let gives_up = [
            // An unknown key (a warning), another type (an error), a problem in a file.
            f.replacen(
                r#""path": "/etc/c.conf""#,
                r#""path": "/etc/c.conf", "x": 1"#,
                1,
            ),
            f.replacen(r#""mode": 384"#, r#""mode": "384""#, 1),
            f.replacen(r#""mode": 384"#, r#""mode": 4095"#, 1),
            f.replacen("/etc/c.conf", "/etc/a.conf", 1),
            f.replacen("data:,a%20b", "https://example.com/a", 1),
        ];
        for files in &gives_up {
            let json = machine_config("a", files);
            assert_eq!(
                super::load_slice(json.as_bytes(), "in.json", &budget),
                None,
                "{files}"
            );
            assert_eq!(budget.snapshot(), (0, false), "budget put back");
        }
        // Files where the document's kind does not look (a List's own `spec`), a key given
        // twice on the way to them.
        let list = format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [], "spec": {{"config": {}}}}}"#,
            ignition(&f)
        );
        let twice =
            machine_config("a", &f).replacen(r#""storage": {"#, r#""storage": {"files": [], "#, 1);
        for json in [list, twice] {
            assert_eq!(
                super::load_slice(json.as_bytes(), "in.json", &budget),
                None,
                "{json}"
            );
            assert!(parse_general(json.as_bytes(), "in.json", &budget).is_ok());
        }
    }
}
