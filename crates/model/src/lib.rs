//! The SailPoint Identity Security Cloud **Provisioning Completed** event (trigger
//! `idn:post-provisioning`), typed, validated and written back with every value as it was read
//! (the schema's fields in its order, unknown fields after them).
//!
//! ISC fires this trigger after it provisions access changes to the accounts of an identity, and
//! posts the event as JSON to every subscriber. This crate is the event's model:
//!
//! - every field of the published schema, typed; enums that keep values the schema does not list
//!   ([`ProvisioningResult::Unknown`], …), because ISC adds values over time;
//! - two validation modes ([`Mode::Lenient`] for ingestion, [`Mode::Strict`] for exactly the
//!   published schema) that report **every** problem at once, each with a wire-name path such as
//!   `accountRequests[1].attributeRequests[0].operation`, a sentence for people and the offending
//!   value, and that tell a missing field from a `null` one;
//! - a faithful round trip: unknown fields at every level are kept and written back, an absent
//!   optional field stays absent and a `null` one stays `null` ([`Maybe`]), and a number in an
//!   unknown field keeps its digits (the crate turns on serde_json's `arbitrary_precision`, so
//!   `123456789012345678901234567890` or `1.50` is not rounded to a double), so
//!   `to_json(from_json(x)) == x` as JSON for every valid `x`;
//! - the `_metadata` envelope that ISC's trigger service adds (`invocationId`, the natural
//!   deduplication key) read as such, not as an unknown field.
//!
//! The crate does no I/O.
//!
//! # Example
//!
//! ```
//! use provtrail_model::{Outcome, ProvisioningCompleted};
//!
//! let json = r#"{
//!   "trackingNumber": "4b4d982dddff4267ab12f0f1e72b5a6d",
//!   "sources": "Corp AD, Corp LDAP",
//!   "recipient": {"type": "IDENTITY", "id": "2c91808568c529c60168cca6f90c1313", "name": "William Wilson"},
//!   "accountRequests": [{
//!     "source": {"id": "4e4d982dddff4267ab12f0f1e72b5a6d", "type": "SOURCE", "name": "Corporate Active Directory"},
//!     "accountOperation": "Modify",
//!     "provisioningResult": "FAILED",
//!     "provisioningTarget": "Corp AD"
//!   }]
//! }"#;
//! let event = ProvisioningCompleted::from_json(json)?;
//! assert_eq!(event.source_names().collect::<Vec<_>>(), ["Corp AD", "Corp LDAP"]);
//! assert_eq!(event.outcome(), Outcome::Failed);
//! assert_eq!(event.failed_account_requests().count(), 1);
//!
//! // Every problem, with its path:
//! let report = provtrail_model::validate_str(r#"{"trackingNumber": null, "sources": 3}"#, &Default::default())?;
//! let paths: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
//! assert_eq!(paths, ["trackingNumber", "sources", "recipient", "accountRequests"]);
//! # Ok::<(), provtrail_model::Error>(())
//! ```
//!
//! # From SailPoint's SDKs to this crate
//!
//! | SDK (Python `sailpoint.triggers.models`, TypeScript; Go's `triggers` package writes `Provisioningcompleted…`) | this crate |
//! |---|---|
//! | `ProvisioningCompleted` | [`ProvisioningCompleted`] |
//! | `ProvisioningCompletedRecipient` | [`IdentityRef`] (alias [`ProvisioningCompletedRecipient`]) |
//! | `ProvisioningCompletedRequester` | [`IdentityRef`] (alias [`ProvisioningCompletedRequester`]) |
//! | `ProvisioningCompletedAccountRequestsInner` | [`AccountRequest`] (alias [`ProvisioningCompletedAccountRequestsInner`]) |
//! | `ProvisioningCompletedAccountRequestsInnerSource` | [`SourceRef`] (alias [`ProvisioningCompletedAccountRequestsInnerSource`]) |
//! | `ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner` | [`AttributeRequest`] (alias [`ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner`]) |
//! | `provisioningResult` enum `SUCCESS` `PENDING` `FAILED` | [`ProvisioningResult`] |
//! | attribute `operation` enum `Add` `Set` `Remove` | [`AttributeOperation`] |
//! | `type` enum `IDENTITY` / `SOURCE` | [`IdentityType`] / [`SourceType`] |
//! | `accountOperation` (string) | `String`, read with [`AccountRequest::operation`] → [`AccountOperation`] |
//! | `action` (string) | [`Maybe<String>`](Maybe), read with [`ProvisioningCompleted::known_action`] → [`Action`] |
//! | optional nullable field (`Optional[X]`, `*X`, `X \| null`) | [`Maybe<X>`](Maybe): `Absent`, `Null` or `Value` |
//! | `from_json(s)` / `to_json()` | [`ProvisioningCompleted::from_json`] / [`ProvisioningCompleted::to_json`], [`ProvisioningCompleted::to_json_pretty`] |
//! | `from_dict(d)` / `to_dict()` | [`ProvisioningCompleted::from_value`] / [`ProvisioningCompleted::to_value`] |
//! | `to_str()` | [`ProvisioningCompleted::to_json_pretty`]; `Display` gives a one-line summary |
//! | constructor with keyword arguments | [`ProvisioningCompleted::new`] + `with_*` setters |
//! | pydantic `ValidationError` (first problem only, no path) | [`Validation`]: every [`Issue`] with its path |
//!
//! # Validation modes
//!
//! | case | lenient | strict |
//! |---|---|---|
//! | missing or `null` required field, wrong JSON type, duplicate key, nesting too deep | error | error |
//! | unknown field (any level) | warning | error |
//! | enum value the schema does not list | warning | error |
//! | `accountOperation` other than `Create`, `Modify`, `Enable`, `Disable`, `Unlock`, `Delete` (free text in the schema; only its beta listed them) | warning | warning |
//! | `attributeValue` as an array of strings | warning | error |
//! | `accountId: null` | warning | error |
//! | malformed `_metadata` envelope | warning | error |
//! | `_metadata` itself | allowed | allowed |

mod decode;
mod encode;
mod issue;
mod maybe;
mod scan;
mod swar;
mod types;
mod write;

pub use issue::{
    Error, Issue, IssueKind, Limits, Mode, Options, Severity, SyntaxError, Validation,
};
pub use maybe::Maybe;
pub use types::{
    AccountOperation, AccountRequest, Action, AttributeOperation, AttributeRequest, AttributeValue,
    Extra, IdentityRef, IdentityType, Metadata, Outcome, ProvisioningCompleted, ProvisioningResult,
    ResultCounts, SourceRef, SourceType,
};

use serde_json::Value;

/// SDK name of [`IdentityRef`] as the event's `recipient`.
pub type ProvisioningCompletedRecipient<'a> = IdentityRef<'a>;
/// SDK name of [`IdentityRef`] as the event's `requester`.
pub type ProvisioningCompletedRequester<'a> = IdentityRef<'a>;
/// SDK name of [`AccountRequest`].
pub type ProvisioningCompletedAccountRequestsInner<'a> = AccountRequest<'a>;
/// SDK name of [`SourceRef`].
pub type ProvisioningCompletedAccountRequestsInnerSource<'a> = SourceRef<'a>;
/// SDK name of [`AttributeRequest`].
pub type ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner<'a> = AttributeRequest<'a>;
/// An event that owns all of its text (see [`ProvisioningCompleted::into_owned`]).
pub type OwnedProvisioningCompleted = ProvisioningCompleted<'static>;
/// SDK name of [`ProvisioningResult`].
pub type ProvisioningCompletedAccountRequestsInnerProvisioningResult = ProvisioningResult;
/// SDK name of [`AttributeOperation`].
pub type ProvisioningCompletedAccountRequestsInnerAttributeRequestsInnerOperation =
    AttributeOperation;

/// Validates a JSON document held in bytes. `Err` only when the bytes are not JSON (or too large);
/// a JSON document that is not a valid event gives `Ok` with its errors.
#[inline]
pub fn validate_slice<'a>(
    bytes: &'a [u8],
    options: &Options,
) -> Result<Validation<'a>, SyntaxError> {
    scan::validate_slice(bytes, options)
}

/// Validates a JSON document held in a string. See [`validate_slice`].
#[inline]
pub fn validate_str<'a>(text: &'a str, options: &Options) -> Result<Validation<'a>, SyntaxError> {
    scan::validate_str(text, options)
}

/// The serde-based reader that [`validate_slice`] must agree with, for differential tests and
/// fuzzing. Not part of the supported API.
#[doc(hidden)]
pub fn validate_slice_reference<'a>(
    bytes: &'a [u8],
    options: &Options,
) -> Result<Validation<'a>, SyntaxError> {
    decode::validate_slice(bytes, options)
}

/// The fast parser alone, without the hand-over to the reference reader: `None` when the input is
/// too large, not UTF-8 or not JSON. For differential tests and fuzzing; not part of the supported
/// API.
#[doc(hidden)]
pub fn validate_slice_fast_only<'a>(bytes: &'a [u8], options: &Options) -> Option<Validation<'a>> {
    scan::validate_fast_only(bytes, options)
}

/// Validates a document that is already a `serde_json::Value`.
pub fn validate_value(value: Value, options: &Options) -> Validation<'static> {
    decode::validate_value(value, options)
}

impl<'a> ProvisioningCompleted<'a> {
    /// Reads an event from JSON text with lenient validation (the SDK's `from_json`). Every problem
    /// is in the error; use [`validate_str`] to also see the warnings.
    pub fn from_json(text: &'a str) -> Result<Self, Error> {
        Self::from_slice(text.as_bytes())
    }

    /// Reads an event from JSON bytes with lenient validation.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, Error> {
        validate_slice(bytes, &Options::default())?.into_result()
    }

    /// Reads an event from a `serde_json::Value` with lenient validation (the SDK's `from_dict`).
    pub fn from_value(value: Value) -> Result<ProvisioningCompleted<'static>, Error> {
        validate_value(value, &Options::default()).into_result()
    }

    /// Compact JSON (the SDK's `to_json`).
    pub fn to_json(&self) -> String {
        // Writing to a String cannot fail, and every map key is a string.
        write::to_string(self).unwrap_or_default()
    }

    /// Indented JSON (the SDK's `to_str`).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Compact JSON appended to a byte buffer, for callers that reuse buffers.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        write::write_event(out, self).map_err(|err| Error::Write(err.to_string()))
    }

    /// The event as a `serde_json::Value` (the SDK's `to_dict`).
    pub fn to_value(&self) -> Value {
        encode::event_value(self)
    }

    /// The event as a `serde_json::Value` with only the top-level members whose wire name `keep`
    /// accepts (unknown members included): the same members, values and order as in
    /// [`to_value`](Self::to_value), the others left out. For a caller that reads a few members
    /// (a filter on `accountRequests`) and need not pay for building the rest.
    pub fn to_value_of(&self, keep: impl Fn(&str) -> bool) -> Value {
        encode::event_members(self, keep)
    }
}

impl std::str::FromStr for ProvisioningCompleted<'static> {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        ProvisioningCompleted::from_json(text).map(ProvisioningCompleted::into_owned)
    }
}

impl TryFrom<Value> for ProvisioningCompleted<'static> {
    type Error = Error;
    fn try_from(value: Value) -> Result<Self, Error> {
        Self::from_value(value)
    }
}

impl From<&ProvisioningCompleted<'_>> for Value {
    fn from(event: &ProvisioningCompleted<'_>) -> Value {
        event.to_value()
    }
}
