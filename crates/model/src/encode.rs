//! Writing an event: known fields in schema order with their wire names, absent fields left out,
//! `null` written as `null`, then the keys the schema does not define, as they were read. The same
//! goes for the event as a `serde_json::Value` ([`event_value`]).

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::types::{
    AccountRequest, AttributeOperation, AttributeRequest, AttributeValue, Extra, IdentityRef,
    IdentityType, Metadata, ProvisioningCompleted, ProvisioningResult, SourceRef, SourceType,
};

/// Writes a field unless it is absent.
fn entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Maybe<T>,
) -> Result<(), M::Error> {
    match value {
        Maybe::Absent => Ok(()),
        Maybe::Null => map.serialize_entry(key, &()),
        Maybe::Value(value) => map.serialize_entry(key, value),
    }
}

/// The keys the schema does not define, except those that name a field the object writes
/// (`written`): see [`Extra`].
fn extra<M: SerializeMap>(
    map: &mut M,
    extra: &Extra,
    written: impl Fn(&str) -> bool,
) -> Result<(), M::Error> {
    for (key, value) in extra {
        if !written(key) {
            map.serialize_entry(key, value)?;
        }
    }
    Ok(())
}

impl Serialize for ProvisioningCompleted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("trackingNumber", &self.tracking_number)?;
        map.serialize_entry("sources", &self.sources)?;
        entry(&mut map, "action", &self.action)?;
        entry(&mut map, "errors", &self.errors)?;
        entry(&mut map, "warnings", &self.warnings)?;
        map.serialize_entry("recipient", &self.recipient)?;
        entry(&mut map, "requester", &self.requester)?;
        map.serialize_entry("accountRequests", &self.account_requests)?;
        if let Some(metadata) = &self.metadata {
            map.serialize_entry("_metadata", metadata)?;
        }
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

impl Serialize for IdentityRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.kind)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("name", &self.name)?;
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

impl Serialize for SourceRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", &self.kind)?;
        map.serialize_entry("name", &self.name)?;
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

impl Serialize for AccountRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("source", &self.source)?;
        entry(&mut map, "accountId", &self.account_id)?;
        map.serialize_entry("accountOperation", &self.account_operation)?;
        map.serialize_entry("provisioningResult", &self.provisioning_result)?;
        map.serialize_entry("provisioningTarget", &self.provisioning_target)?;
        entry(&mut map, "ticketId", &self.ticket_id)?;
        entry(&mut map, "attributeRequests", &self.attribute_requests)?;
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

impl Serialize for AttributeRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("attributeName", &self.attribute_name)?;
        entry(&mut map, "attributeValue", &self.attribute_value)?;
        map.serialize_entry("operation", &self.operation)?;
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

impl Serialize for AttributeValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeValue::Single(value) => serializer.serialize_str(value),
            AttributeValue::Multi(values) => values.serialize(serializer),
        }
    }
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(trigger_id) = &self.trigger_id {
            map.serialize_entry("triggerId", trigger_id)?;
        }
        if let Some(trigger_type) = &self.trigger_type {
            map.serialize_entry("triggerType", trigger_type)?;
        }
        if let Some(invocation_id) = &self.invocation_id {
            map.serialize_entry("invocationId", invocation_id)?;
        }
        extra(&mut map, &self.extra, |key| self.writes_field(key))?;
        map.end()
    }
}

/// As its map.
impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

/// As a map.
impl<'de> serde::Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Extra::from)
    }
}

macro_rules! serialize_as_wire {
    ($($ty:ty),+) => {
        $(impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_wire())
            }
        })+
    };
}

serialize_as_wire!(
    ProvisioningResult,
    AttributeOperation,
    IdentityType,
    SourceType
);

/// The event as a `serde_json::Value`, built directly: the same value as `serde_json::to_value`
/// of the [`Serialize`] impls above, in the same key order, at a fraction of the cost (no
/// serializer state per value, and each map is allocated once at its final size). Route filters
/// are evaluated on this value for every stored event, so it is on the ingest path.
pub(crate) fn event_value(event: &ProvisioningCompleted<'_>) -> Value {
    event_members(event, |_| true)
}

/// As [`event_value`], with only the top-level members whose name `keep` accepts: a route filter
/// that reads one member needs no value built for the others.
pub(crate) fn event_members(
    event: &ProvisioningCompleted<'_>,
    keep: impl Fn(&str) -> bool,
) -> Value {
    let mut map = Map::with_capacity(9 + event.extra.len());
    if keep("trackingNumber") {
        map.insert("trackingNumber".into(), text(&event.tracking_number));
    }
    if keep("sources") {
        map.insert("sources".into(), text(&event.sources));
    }
    if keep("action") {
        maybe(&mut map, "action", &event.action, |action| text(action));
    }
    if keep("errors") {
        maybe(&mut map, "errors", &event.errors, |errors| texts(errors));
    }
    if keep("warnings") {
        maybe(&mut map, "warnings", &event.warnings, |warnings| {
            texts(warnings)
        });
    }
    if keep("recipient") {
        map.insert("recipient".into(), identity_value(&event.recipient));
    }
    if keep("requester") {
        maybe(&mut map, "requester", &event.requester, identity_value);
    }
    if keep("accountRequests") {
        map.insert(
            "accountRequests".into(),
            Value::Array(event.account_requests.iter().map(account_value).collect()),
        );
    }
    if keep("_metadata") {
        if let Some(metadata) = &event.metadata {
            map.insert("_metadata".into(), metadata_value(metadata));
        }
    }
    extra_values(&mut map, &event.extra, |key| {
        event.writes_field(key) || !keep(key)
    });
    Value::Object(map)
}

fn text(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn texts(texts: &[Cow<'_, str>]) -> Value {
    Value::Array(texts.iter().map(|value| text(value)).collect())
}

/// Inserts a field unless it is absent.
fn maybe<T>(
    map: &mut Map<String, Value>,
    key: &str,
    field: &Maybe<T>,
    value: impl Fn(&T) -> Value,
) {
    match field {
        Maybe::Absent => {}
        Maybe::Null => {
            map.insert(key.to_owned(), Value::Null);
        }
        Maybe::Value(field) => {
            map.insert(key.to_owned(), value(field));
        }
    }
}

/// As [`extra`]: the keys the schema does not define, except those the object writes.
fn extra_values(map: &mut Map<String, Value>, extra: &Extra, written: impl Fn(&str) -> bool) {
    for (key, value) in extra {
        if !written(key) {
            map.insert(key.clone(), value.clone());
        }
    }
}

fn identity_value(identity: &IdentityRef<'_>) -> Value {
    let mut map = Map::with_capacity(3 + identity.extra.len());
    map.insert("type".into(), text(identity.kind.as_wire()));
    map.insert("id".into(), text(&identity.id));
    map.insert("name".into(), text(&identity.name));
    extra_values(&mut map, &identity.extra, |key| identity.writes_field(key));
    Value::Object(map)
}

fn account_value(account: &AccountRequest<'_>) -> Value {
    let mut map = Map::with_capacity(7 + account.extra.len());
    map.insert("source".into(), source_value(&account.source));
    maybe(&mut map, "accountId", &account.account_id, |id| text(id));
    map.insert("accountOperation".into(), text(&account.account_operation));
    map.insert(
        "provisioningResult".into(),
        text(account.provisioning_result.as_wire()),
    );
    map.insert(
        "provisioningTarget".into(),
        text(&account.provisioning_target),
    );
    maybe(&mut map, "ticketId", &account.ticket_id, |id| text(id));
    maybe(
        &mut map,
        "attributeRequests",
        &account.attribute_requests,
        |requests| Value::Array(requests.iter().map(attribute_value).collect()),
    );
    extra_values(&mut map, &account.extra, |key| account.writes_field(key));
    Value::Object(map)
}

fn source_value(source: &SourceRef<'_>) -> Value {
    let mut map = Map::with_capacity(3 + source.extra.len());
    map.insert("id".into(), text(&source.id));
    map.insert("type".into(), text(source.kind.as_wire()));
    map.insert("name".into(), text(&source.name));
    extra_values(&mut map, &source.extra, |key| source.writes_field(key));
    Value::Object(map)
}

fn attribute_value(attribute: &AttributeRequest<'_>) -> Value {
    let mut map = Map::with_capacity(3 + attribute.extra.len());
    map.insert("attributeName".into(), text(&attribute.attribute_name));
    maybe(
        &mut map,
        "attributeValue",
        &attribute.attribute_value,
        |value| match value {
            AttributeValue::Single(value) => text(value),
            AttributeValue::Multi(values) => texts(values),
        },
    );
    map.insert("operation".into(), text(attribute.operation.as_wire()));
    extra_values(&mut map, &attribute.extra, |key| {
        attribute.writes_field(key)
    });
    Value::Object(map)
}

fn metadata_value(metadata: &Metadata<'_>) -> Value {
    let mut map = Map::with_capacity(3 + metadata.extra.len());
    for (key, field) in [
        ("triggerId", &metadata.trigger_id),
        ("triggerType", &metadata.trigger_type),
        ("invocationId", &metadata.invocation_id),
    ] {
        if let Some(field) = field {
            map.insert(key.to_owned(), text(field));
        }
    }
    extra_values(&mut map, &metadata.extra, |key| metadata.writes_field(key));
    Value::Object(map)
}
