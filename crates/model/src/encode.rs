//! Writing an event: known fields in schema order with their wire names, absent fields left out,
//! `null` written as `null`, then the keys the schema does not define, as they were read.

use serde::ser::{Serialize, SerializeMap, Serializer};

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
        serde_json::Map::deserialize(deserializer).map(Extra::from)
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
