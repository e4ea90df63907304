//! JSON helpers of the test API server: merge patch (RFC 7386), JSON patch (RFC 6902, the ops
//! clients send), field selectors.

use serde_json::Value;

/// RFC 7386 merge of `patch` into `target` (`null` deletes).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Applies an RFC 6902 patch (add, remove, replace, test).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch is an array")?;
    for op in ops {
        let kind = op["op"].as_str().ok_or("op missing")?;
        let path = op["path"].as_str().ok_or("path missing")?;
        if kind == "test" {
            if target.pointer(path) != Some(&op["value"]) {
                return Err(format!("test failed at {path}"));
            }
            continue;
        }
        let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
        let last = unescape(last);
        let parent = target
            .pointer_mut(parent_path)
            .ok_or(format!("no parent for {path}"))?;
        match (kind, parent) {
            ("add" | "replace", Value::Object(m)) => {
                if kind == "replace" && !m.contains_key(&last) {
                    return Err(format!("replace of missing {path}"));
                }
                m.insert(last, op["value"].clone());
            }
            ("add", Value::Array(a)) => {
                let i = if last == "-" {
                    a.len()
                } else {
                    last.parse().map_err(|_| "bad index")?
                };
                a.insert(i.min(a.len()), op["value"].clone());
            }
            ("replace", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| "bad index")?;
                *a.get_mut(i).ok_or("index out of range")? = op["value"].clone();
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last).ok_or(format!("remove of missing {path}"))?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| "bad index")?;
                if i >= a.len() {
                    return Err("index out of range".into());
                }
                a.remove(i);
            }
            _ => return Err(format!("unsupported op {kind} at {path}")),
        }
    }
    Ok(())
}

/// Whether `obj` matches a field selector like `metadata.name=a,spec.nodeName=b`.
pub fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (field, want, negate) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, v, false)
        } else {
            return false;
        };
        let pointer = format!("/{}", field.replace('.', "/"));
        let have = obj.pointer(&pointer).and_then(Value::as_str).unwrap_or("");
        (have == want) != negate
    })
}
