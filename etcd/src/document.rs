//! A snapshot document and its keys, both ways: `P/<collection>/<id>` per resource, `P/version`
//! its version; `P/agents/…` belongs to the datapaths, not to the snapshot.

use std::collections::BTreeMap;

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
    let mut r = Resources::default();
    for (key, value) in keys {
        r.put(prefix, key, value);
    }
    r.document()
}

/// The keys under a prefix as a snapshot, kept up to date key by key (the follower's mirror of
/// what is published): each resource parsed once, when its key is written, so a new version
/// costs what changed in it, not the whole snapshot read and parsed again.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    /// By full key: the collection and the object, or the line saying why the key is none.
    items: BTreeMap<String, Result<(String, Value), String>>,
    version: Option<Result<u64, String>>,
}

/// What a key under the prefix is.
pub(crate) enum Kind<'a> {
    Version,
    Agent,
    /// A resource key: its collection and id.
    Resource(&'a str, &'a str),
    /// Under the prefix, but none of those.
    Stray,
    Outside,
}

pub(crate) fn kind<'a>(prefix: &str, key: &'a str) -> Kind<'a> {
    let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else { return Kind::Outside };
    match rest.split_once('/') {
        _ if rest == VERSION => Kind::Version,
        Some((AGENTS, _)) => Kind::Agent,
        Some((collection, id)) => Kind::Resource(collection, id),
        None => Kind::Stray,
    }
}

impl Resources {
    /// `key` now holds `value`.
    pub(crate) fn put(&mut self, prefix: &str, key: &str, value: &[u8]) {
        match kind(prefix, key) {
            Kind::Version => {
                let text = std::str::from_utf8(value).unwrap_or_default().trim();
                self.version =
                    Some(text.parse::<u64>().map_err(|_| format!("etcd key {key}: {text:?} is not a non-negative integer version")));
            }
            Kind::Agent | Kind::Outside => {}
            Kind::Stray => {
                self.items.insert(key.to_string(), Err("not a resource: resources are P/<collection>/<id>".into()));
            }
            Kind::Resource(collection, id) => {
                let item = match serde_json::from_slice::<Value>(value) {
                    Err(e) => Err(format!("not JSON: {e}")),
                    Ok(item) => match item.get("id").and_then(Value::as_str) {
                        Some(i) if i == id => Ok((collection.to_string(), item)),
                        Some(i) => Err(format!("holds the resource of id {i:?}")),
                        None => Err("not a resource object with a string id".into()),
                    },
                };
                self.items.insert(key.to_string(), item);
            }
        }
    }

    /// `key` was deleted.
    pub(crate) fn delete(&mut self, prefix: &str, key: &str) {
        match kind(prefix, key) {
            Kind::Version => self.version = None,
            _ => {
                self.items.remove(key);
            }
        }
    }

    /// The document the keys make now; `None` without a version.
    pub(crate) fn document(&self) -> Result<Option<(u64, Value)>, Error> {
        let Some(version) = &self.version else { return Ok(None) };
        let mut doc = Map::new();
        for (key, item) in &self.items {
            let (collection, item) = item.as_ref().map_err(|why| Error(format!("etcd key {key}: {why}")))?;
            match doc.entry(collection.as_str()).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(item.clone()),
                _ => return Err(Error(format!("etcd key {key}: not a collection"))),
            }
        }
        let v = *version.as_ref().map_err(|why| Error(why.clone()))?;
        doc.insert(VERSION.into(), v.into());
        Ok(Some((v, Value::Object(doc))))
    }
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
    fn the_mirror_follows_puts_and_deletes() {
        let mut r = Resources::default();
        assert_eq!(r.document().unwrap(), None);
        r.put("/p", "/p/ports/a", b"{\"id\": \"a\", \"v\": 1}");
        r.put("/p", "/p/ports/b", b"{\"id\": \"b\"}");
        r.put("/p", "/p/agents/h", b"{}");
        r.put("/p", "/other/ports/c", b"{\"id\": \"c\"}");
        r.put("/p", "/p/version", b"3");
        assert_eq!(r.document().unwrap().unwrap().1, serde_json::json!({"version": 3, "ports": [{"id": "a", "v": 1}, {"id": "b"}]}));
        r.put("/p", "/p/ports/a", b"{\"id\": \"a\", \"v\": 2}");
        r.delete("/p", "/p/ports/b");
        r.put("/p", "/p/stray", b"1");
        assert!(r.document().is_err(), "a stray key refuses the version");
        r.delete("/p", "/p/stray");
        r.put("/p", "/p/version", b"4");
        assert_eq!(r.document().unwrap().unwrap().1, serde_json::json!({"version": 4, "ports": [{"id": "a", "v": 2}]}));
        r.delete("/p", "/p/version");
        assert_eq!(r.document().unwrap(), None);
    }

    #[test]
    fn what_cannot_be_a_snapshot_is_named() {
        // (A version makes the keys a publication; without one nothing is published, and
        // nothing is wrong yet.)
        let read = |kvs: &[(&str, &str)]| document_of("/p", kvs.iter().map(|(k, v)| (*k, v.as_bytes())));
        assert_eq!(read(&[("/p/ports/a", "{\"id\":\"a\"}")]).unwrap(), None, "no version: nothing published");
        let err = |kvs: &[(&str, &str)]| read(&[kvs, &[("/p/version", "1")]].concat()).unwrap_err().0;
        assert_eq!(read(&[("/p/version", "x1")]).unwrap_err().0, "etcd key /p/version: \"x1\" is not a non-negative integer version");
        assert_eq!(err(&[("/p/ports/a", "{\"id\":\"b\"}")]), "etcd key /p/ports/a: holds the resource of id \"b\"");
        assert!(err(&[("/p/ports/a", "{nope")]).starts_with("etcd key /p/ports/a: not JSON: "));
        assert_eq!(err(&[("/p/stray", "1")]), "etcd key /p/stray: not a resource: resources are P/<collection>/<id>");
        assert!(keys_of(&serde_json::json!({"ports": []})).is_err(), "no version");
        assert!(keys_of(&serde_json::json!({"version": 1, "agents": []})).is_err());
        assert!(keys_of(&serde_json::json!({"version": 1, "ports": [{"id": "a"}, {"id": "a"}]})).is_err());
        assert!(keys_of(&serde_json::json!({"version": 1, "ports": [{"name": "a"}]})).is_err());
    }
}
