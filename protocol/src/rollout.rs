//! A rollout: one message, signed once, that carries one request per host.
//!
//! A security key asks for a touch per signature, so a fleet deployed with
//! one is sent a single signed message for all its hosts. Its payload type
//! is [`ROLLOUT_PAYLOAD_TYPE`]; its payload holds the fields every host
//! shares (`kind`, `issued_at`, `expires_at`, and for a deploy `action`,
//! `flake`, `rev`, ...) and, under `hosts`, each host's own fields (`nonce`,
//! `deploy_id`, and for a deploy `store_path`):
//!
//! ```json
//! {"kind": "deploy", "issued_at": 1800000000, "expires_at": 1800000300,
//!  "action": "switch", "rev": "...",
//!  "hosts": {"sambirano": {"nonce": "...", "deploy_id": "...", "store_path": "..."},
//!            "kelyus":    {"nonce": "...", "deploy_id": "...", "store_path": "..."}}}
//! ```
//!
//! A host verifies the signature over the exact bytes, then takes the shared
//! fields, its own entry and its own name as `host`: exactly the message a
//! single-host envelope would carry, checked by the same code. A host the
//! rollout does not name refuses it (`wrong_host`); its own nonce keeps a
//! replay out, its `issued_at` a downgrade.

use serde_json::{Map, Value};

use crate::names::{quote, HostName};
use crate::payload::PayloadError;

/// The payload type of a message to several hosts.
pub const ROLLOUT_PAYLOAD_TYPE: &str = "application/vnd.deployd.rollout.v1+json";
/// The most hosts one rollout message may name (push signs more in parts).
pub const MAX_ROLLOUT_HOSTS: usize = 500;

/// What a host finds in a rollout.
pub(crate) enum RolloutEntry {
    /// Its message, as the JSON object a single-host payload would be.
    Mine(Map<String, Value>),
    /// The rollout does not name it; these are the hosts it names.
    NotMine(String),
}

/// Takes this host's message out of a rollout payload.
pub(crate) fn entry_for(text: &str, host: &HostName) -> Result<RolloutEntry, PayloadError> {
    let mut shared = parse_object(text).map_err(PayloadError::Json)?;
    let invalid = |reason| PayloadError::Value {
        field: "hosts",
        reason,
    };
    let Some(Value::Object(mut hosts)) = shared.remove("hosts") else {
        return Err(invalid("a rollout needs an object of hosts"));
    };
    if hosts.is_empty() || hosts.len() > MAX_ROLLOUT_HOSTS {
        return Err(invalid("a rollout names 1 to 500 hosts"));
    }
    if shared.contains_key("host") {
        return Err(invalid("a rollout names its hosts under hosts, not host"));
    }
    let Some(mine) = hosts.remove(host.as_str()) else {
        let names: Vec<&str> = hosts.keys().map(String::as_str).collect();
        return Ok(RolloutEntry::NotMine(quote(&format!(
            "a rollout to {}",
            names.join(", ")
        ))));
    };
    let Value::Object(mine) = mine else {
        return Err(invalid("each host's entry must be an object"));
    };
    for (field, value) in mine {
        if field == "host" || shared.contains_key(&field) {
            return Err(invalid(
                "a host's entry repeats a shared field or names a host",
            ));
        }
        shared.insert(field, value);
    }
    shared.insert("host".to_owned(), Value::String(host.to_string()));
    Ok(RolloutEntry::Mine(shared))
}

/// Parses a JSON object, refusing a key given twice in any object of it.
/// serde_json's `Map` keeps the last of repeated keys, so a rollout could
/// show its signer one store path and hand the host another; a single-host
/// payload is refused the same way by its struct's parser.
pub(crate) fn parse_object(text: &str) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::from_str::<UniqueKeys>(text)?.0 {
        Value::Object(object) => Ok(object),
        _ => Err(serde::de::Error::custom("a payload is a JSON object")),
    }
}

/// A JSON value none of whose objects repeats a key.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::from(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::String(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::String(value)))
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        let mut values = Vec::new();
        while let Some(UniqueKeys(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(UniqueKeys(Value::Array(values)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {} is given twice",
                    quote(&key)
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(UniqueKeys(Value::Object(object)))
    }
}

/// The fields each host of a rollout has for itself; all others are shared.
const PER_HOST_FIELDS: [&str; 3] = ["nonce", "deploy_id", "store_path"];

/// Why messages cannot be sent as one rollout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// No message, or more than [`MAX_ROLLOUT_HOSTS`].
    #[error("a rollout carries 1 to {MAX_ROLLOUT_HOSTS} messages, not {0}")]
    Count(usize),
    /// Two messages for one host.
    #[error("two messages for host {0}")]
    DuplicateHost(HostName),
    /// The messages differ in more than their per-host fields.
    #[error("the message for {0} differs from the first in a shared field (kind, window, action, revision...)")]
    NotShared(HostName),
}

/// The payload of one rollout carrying `messages`, one per host, which
/// differ only in host, nonce, deploy id and store path.
pub fn rollout_payload(messages: &[crate::Message]) -> Result<Vec<u8>, RolloutError> {
    if messages.is_empty() || messages.len() > MAX_ROLLOUT_HOSTS {
        return Err(RolloutError::Count(messages.len()));
    }
    let mut shared: Option<Map<String, Value>> = None;
    let mut hosts = Map::new();
    for message in messages {
        let mut fields = message.to_json_object();
        fields.remove("host");
        let own: Map<String, Value> = PER_HOST_FIELDS
            .iter()
            .filter_map(|field| Some((field.to_string(), fields.remove(*field)?)))
            .collect();
        match &shared {
            None => shared = Some(fields),
            Some(first) if *first != fields => {
                return Err(RolloutError::NotShared(message.host.clone()))
            }
            Some(_) => {}
        }
        if hosts
            .insert(message.host.to_string(), Value::Object(own))
            .is_some()
        {
            return Err(RolloutError::DuplicateHost(message.host.clone()));
        }
    }
    let mut payload = shared.unwrap_or_default();
    payload.insert("hosts".to_owned(), Value::Object(hosts));
    Ok(serde_json::to_vec(&payload).unwrap_or_else(|_| unreachable!("JSON values serialize")))
}
