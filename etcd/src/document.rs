//! A snapshot document and its keys, both ways: `P/<collection>/<id>` per resource, `P/version`
//! its version; `P/agents/…` belongs to the datapaths, not to the snapshot.

use serde_json::{Map, Value};

use crate::Error;

/// The part of the prefix the datapaths' records live under, never a collection.
pub(crate) const AGENTS: &str = "agents";
/// The key, under the prefix, of the version.
pub(crate) const VERSION: &str = "version";

/// The snapshot document the keys under `prefix` make (`keys`: each key in full with its
/// value, as read at one revision): its version and every resource in its collection's list,
/// in key order. `None` when no version is published. A key that is not `P/version`, a
/// datapath's record or `P/<collection>/<id>` holding a JSON object of that id is one line
/// naming the key.
pub fn document_of<'a>(prefix: &str, keys: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Option<(u64, Value)>, Error> {
    let mut doc = Map::new();
    let mut version = None;
    for (key, value) in keys {
        let bad = |why: String| Error(format!("etcd key {key}: {why}"));
        let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else { continue };
        if rest == VERSION {
            let text = std::str::from_utf8(value).unwrap_or_default().trim();
            version = Some(text.parse::<u64>().map_err(|_| bad(format!("{text:?} is not a non-negative integer version")))?);
            continue;
        }
        let Some((collection, id)) = rest.split_once('/') else {
            return Err(bad("not a resource: resources are P/<collection>/<id>".into()));
        };
        if collection == AGENTS {
            continue;
        }
        let item: Value = serde_json::from_slice(value).map_err(|e| bad(format!("not JSON: {e}")))?;
        match item.get("id").and_then(Value::as_str) {
            Some(i) if i == id => {}
            Some(i) => return Err(bad(format!("holds the resource of id {i:?}"))),
            None => return Err(bad("not a resource object with a string id".into())),
        }
        match doc.entry(collection).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(item),
            _ => return Err(bad("not a collection".into())),
        }
    }
    Ok(version.map(|v| {
        doc.insert(VERSION.into(), v.into());
        (v, Value::Object(doc))
    }))
}

/// The keys (under the prefix, without it) and values that publish `doc`, a snapshot file's
/// document, its version last; one line naming what cannot be published that way.
pub fn keys_of(doc: &Value) -> Result<(u64, Vec<(String, String)>), Error> {
    let Value::Object(obj) = doc else { return Err(Error("the snapshot is not a JSON object".into())) };
    let version = obj
        .get(VERSION)
        .and_then(Value::as_u64)
        .ok_or_else(|| Error("version: a published snapshot carries a non-negative integer version".into()))?;
    let mut keys = Vec::new();
    for (name, value) in obj {
        if name == VERSION {
            continue;
        }
        if name == AGENTS || name.is_empty() || name.contains('/') {
            return Err(Error(format!("{name:?}: not a name a collection can have in etcd")));
        }
        let Value::Array(items) = value else { return Err(Error(format!("{name}: not a list"))) };
        for item in items {
            let id = item.get("id").and_then(Value::as_str).filter(|i| !i.is_empty());
            let Some(id) = id else { return Err(Error(format!("{name}: a resource without a string id: {item}"))) };
            keys.push((format!("{name}/{id}"), item.to_string()));
        }
    }
    keys.sort();
    if let Some(w) = keys.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error(format!("{}: the id is used twice", w[0].0)));
    }
    Ok((version, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_makes_keys_that_make_it_again() {
        let doc = serde_json::json!({
            "version": 7,
            "ports": [{"id": "p2", "name": "b"}, {"id": "p1", "x": [1, 2]}],
            "routers": [{"id": "r/1"}],
            "hosts": [],
        });
        let (v, keys) = keys_of(&doc).unwrap();
        assert_eq!(v, 7);
        assert_eq!(keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["ports/p1", "ports/p2", "routers/r/1"]);
        let full: Vec<(String, String)> =
            keys.iter().map(|(k, v)| (format!("/p/{k}"), v.clone())).chain([("/p/version".into(), "7".into())]).collect();
        let agent = ("/p/agents/host-a".to_string(), "{\"version\": 6}".to_string());
        let read = full.iter().chain([&agent]).map(|(k, v)| (k.as_str(), v.as_bytes()));
        let (v, again) = document_of("/p", read).unwrap().unwrap();
        assert_eq!(v, 7);
        assert_eq!(again["ports"], serde_json::json!([{"id": "p1", "x": [1, 2]}, {"id": "p2", "name": "b"}]));
        assert_eq!(again["routers"], serde_json::json!([{"id": "r/1"}]));
        assert_eq!(again["version"], 7);
    }

    #[test]
    fn what_cannot_be_a_snapshot_is_named() {
        let read = |kvs: &[(&str, &str)]| document_of("/p", kvs.iter().map(|(k, v)| (*k, v.as_bytes())));
        assert_eq!(read(&[("/p/ports/a", "{\"id\":\"a\"}")]).unwrap(), None, "no version: nothing published");
        let err = |kvs: &[(&str, &str)]| read(kvs).unwrap_err().0;
        assert_eq!(err(&[("/p/version", "x1")]), "etcd key /p/version: \"x1\" is not a non-negative integer version");
        assert_eq!(err(&[("/p/ports/a", "{\"id\":\"b\"}")]), "etcd key /p/ports/a: holds the resource of id \"b\"");
        assert!(err(&[("/p/ports/a", "{nope")]).starts_with("etcd key /p/ports/a: not JSON: "));
        assert_eq!(err(&[("/p/stray", "1")]), "etcd key /p/stray: not a resource: resources are P/<collection>/<id>");
        assert!(keys_of(&serde_json::json!({"ports": []})).is_err(), "no version");
        assert!(keys_of(&serde_json::json!({"version": 1, "agents": []})).is_err());
        assert!(keys_of(&serde_json::json!({"version": 1, "ports": [{"id": "a"}, {"id": "a"}]})).is_err());
        assert!(keys_of(&serde_json::json!({"version": 1, "ports": [{"name": "a"}]})).is_err());
    }
}
