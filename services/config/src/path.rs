//! Dotted paths into the configuration document: `calls.max_call_time`,
//! `accounts.1.dnd.return_code`, `relays.A.hold`, `multicast.listen.2.port`.
//!
//! A list of objects with an `id` (or, for buttons, a `button`) field is indexed by
//! that field; any other list by position, starting at 1.

use serde_json::Value;

/// Why a path does not lead to a value.
#[derive(Debug, PartialEq, Eq)]
pub struct NotFound(pub String);

/// The id (or button number) that names a list item, if it has one.
pub fn key_of(item: &Value) -> Option<String> {
    let obj = item.as_object()?;
    let key = obj.get("id").or_else(|| obj.get("button"))?;
    Some(match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn step<'a>(node: &'a mut Value, segment: &str, walked: &str) -> Result<&'a mut Value, NotFound> {
    let missing = || NotFound(format!("{walked}{segment}: no such key"));
    match node {
        Value::Object(map) => map.get_mut(segment).ok_or_else(missing),
        Value::Array(items) => {
            if items.first().and_then(key_of).is_some() {
                items
                    .iter_mut()
                    .find(|item| key_of(item).as_deref() == Some(segment))
                    .ok_or_else(missing)
            } else {
                segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(missing)
            }
        }
        _ => Err(missing()),
    }
}

fn walk<'a>(root: &'a mut Value, path: &str) -> Result<&'a mut Value, NotFound> {
    if path.is_empty() {
        return Err(NotFound("the key is empty".to_owned()));
    }
    let mut node = root;
    let mut walked = String::new();
    for segment in path.split('.') {
        node = step(node, segment, &walked)?;
        walked.push_str(segment);
        walked.push('.');
    }
    Ok(node)
}

/// A serde path (`accounts[0].dnd`) written the way the document's paths are:
/// list items by their id, or by position from 1 (`accounts[2].dnd`).
pub fn describe(path: &serde_path_to_error::Path, tree: &Value) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut node = Some(tree);
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
                node = node.and_then(|n| n.get(key));
            }
            Segment::Seq { index } => {
                let item = node.and_then(|n| n.get(*index));
                let label = item
                    .and_then(key_of)
                    .unwrap_or_else(|| (index + 1).to_string());
                out.push_str(&format!("[{label}]"));
                node = item;
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        "document".to_owned()
    } else {
        out
    }
}

/// The value at `path`.
pub fn get(root: &Value, path: &str) -> Result<Value, NotFound> {
    let mut copy = root.clone();
    walk(&mut copy, path).map(|v| v.take())
}

/// Replaces the value at `path`; the path must exist.
pub fn set(root: &mut Value, path: &str, value: Value) -> Result<(), NotFound> {
    *walk(root, path)? = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "calls": {"max_call_time": 300},
            "accounts": [{"id": 2, "dnd": {"return_code": 486}}],
            "relays": [{"id": "A", "hold": 3}],
            "buttons": [{"button": 4, "numbers": ["200", "201"]}],
            "multicast": {"listen": [{"address": "239.1.1.1", "port": 5000}]}
        })
    }

    #[test]
    fn reads_by_key_id_and_position() {
        let d = doc();
        assert_eq!(get(&d, "calls.max_call_time").unwrap(), json!(300));
        assert_eq!(get(&d, "accounts.2.dnd.return_code").unwrap(), json!(486));
        assert_eq!(get(&d, "relays.A.hold").unwrap(), json!(3));
        assert_eq!(get(&d, "buttons.4.numbers.2").unwrap(), json!("201"));
        assert_eq!(get(&d, "multicast.listen.1.port").unwrap(), json!(5000));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let d = doc();
        for p in [
            "",
            "calls.nope",
            "accounts.1",
            "multicast.listen.0",
            "calls.max_call_time.x",
        ] {
            assert!(get(&d, p).is_err(), "{p}");
        }
        assert_eq!(
            get(&d, "accounts.1.dnd").unwrap_err(),
            NotFound("accounts.1: no such key".into())
        );
    }

    #[test]
    fn writes_in_place() {
        let mut d = doc();
        set(&mut d, "accounts.2.dnd.return_code", json!(603)).unwrap();
        assert_eq!(d["accounts"][0]["dnd"]["return_code"], json!(603));
        assert!(set(&mut d, "calls.other", json!(1)).is_err());
    }
}
