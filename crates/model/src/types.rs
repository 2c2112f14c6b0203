//! The event's types, their constructors and the helpers people need from them.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::Maybe;

/// Keys that the schema does not define, kept in document order and written back on output.
///
/// A `serde_json::Map` that is only allocated when it gets a key: nearly every object of an event
/// has no unknown field, and an empty `Map` (an `IndexMap` with its hasher) is large to build, to
/// move with the event and to drop. It derefs to the map, so every method of `serde_json::Map`
/// works on it; one that takes `&mut self` allocates the map if there is none yet. Equality is the
/// map's: an `Extra` without a map equals one with an empty map.
///
/// A key that names a field its object writes (`trackingNumber`; `action` unless it is absent;
/// `_metadata` when there is an envelope; …) is not written: the typed field wins, so that the
/// JSON never has the same key twice. A key that names a field the object leaves out is written,
/// which is how a malformed `_metadata` envelope, or an envelope key whose value is not a string,
/// is written back as it was read.
#[derive(Clone, Default)]
pub struct Extra(Option<Box<Map<String, Value>>>);

/// What an `Extra` without a map derefs to.
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl Extra {
    /// No keys, and nothing allocated.
    pub const fn new() -> Self {
        Extra(None)
    }

    /// Number of keys.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    /// True when there are no keys.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|map| map.is_empty())
    }

    /// The keys as a `serde_json::Map`.
    pub fn into_map(self) -> Map<String, Value> {
        self.0.map(|map| *map).unwrap_or_default()
    }
}

impl Deref for Extra {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        self.0.get_or_insert_with(Box::default)
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Extra) -> bool {
        **self == **other
    }
}

impl Eq for Extra {}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        if map.is_empty() {
            Extra(None)
        } else {
            Extra(Some(Box::new(map)))
        }
    }
}

impl From<Extra> for Map<String, Value> {
    fn from(extra: Extra) -> Self {
        extra.into_map()
    }
}

impl FromIterator<(String, Value)> for Extra {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Extra::from(Map::from_iter(iter))
    }
}

impl Extend<(String, Value)> for Extra {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        if iter.peek().is_some() {
            (**self).extend(iter);
        }
    }
}

impl IntoIterator for Extra {
    type Item = (String, Value);
    type IntoIter = serde_json::map::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.into_map().into_iter()
    }
}

impl<'e> IntoIterator for &'e Extra {
    type Item = (&'e String, &'e Value);
    type IntoIter = serde_json::map::Iter<'e>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'e> IntoIterator for &'e mut Extra {
    type Item = (&'e String, &'e mut Value);
    type IntoIter = serde_json::map::IterMut<'e>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// The Provisioning Completed event (SDK: `ProvisioningCompleted`).
///
/// Construct one with [`ProvisioningCompleted::new`] and the `with_*` setters, or read one with
/// [`ProvisioningCompleted::from_json`]. Every struct keeps keys it does not know in `extra`, so a
/// round trip writes back everything it read.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningCompleted<'a> {
    /// `trackingNumber`: reference number of the provisioning request (the ID shown by ISC's
    /// Account Activity search).
    pub tracking_number: Cow<'a, str>,
    /// `sources`: names of the sources provisioned against, joined by `", "`. See
    /// [`ProvisioningCompleted::source_names`].
    pub sources: Cow<'a, str>,
    /// `action`: origin of the request, free text. See [`ProvisioningCompleted::known_action`].
    pub action: Maybe<Cow<'a, str>>,
    /// `errors`: accumulated error messages.
    pub errors: Maybe<Vec<Cow<'a, str>>>,
    /// `warnings`: accumulated warning messages.
    pub warnings: Maybe<Vec<Cow<'a, str>>>,
    /// `recipient`: the identity whose access changed.
    pub recipient: IdentityRef<'a>,
    /// `requester`: the identity that asked for the change.
    pub requester: Maybe<IdentityRef<'a>>,
    /// `accountRequests`: per-account provisioning instructions; their order is not meaningful.
    pub account_requests: Vec<AccountRequest<'a>>,
    /// `_metadata`: the delivery envelope ISC's trigger service adds; not part of the schema.
    /// Boxed: most events read from elsewhere than a subscription have none, and the event is
    /// smaller to move.
    pub metadata: Option<Box<Metadata<'a>>>,
    /// Keys the schema does not define (a malformed `_metadata` is kept here as received).
    pub extra: Extra,
}

/// The `recipient` or `requester` of an event (SDK: `ProvisioningCompletedRecipient`,
/// `ProvisioningCompletedRequester`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRef<'a> {
    /// `type`: always `IDENTITY` in the published schema.
    pub kind: IdentityType,
    /// `id`: the identity's ID.
    pub id: Cow<'a, str>,
    /// `name`: the identity's display name.
    pub name: Cow<'a, str>,
    /// Keys the schema does not define.
    pub extra: Extra,
}

/// One account's provisioning instruction and its outcome (SDK:
/// `ProvisioningCompletedAccountRequestsInner`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRequest<'a> {
    /// `source`: the source provisioned against.
    pub source: SourceRef<'a>,
    /// `accountId`: the account's native identity (a DN, a login, an ID). Not nullable in the
    /// published schema; lenient validation accepts `null` with a warning.
    pub account_id: Maybe<Cow<'a, str>>,
    /// `accountOperation`: free text, typically `Create`, `Modify`, `Enable`, `Disable`,
    /// `Unlock`, `Delete`. See [`AccountRequest::operation`].
    pub account_operation: Cow<'a, str>,
    /// `provisioningResult`: the outcome for this account.
    pub provisioning_result: ProvisioningResult,
    /// `provisioningTarget`: the provisioning channel: the source's name, or a service-desk
    /// integration (SDIM).
    pub provisioning_target: Cow<'a, str>,
    /// `ticketId`: service-desk ticket number when sent through an SDIM; a string even when numeric.
    pub ticket_id: Maybe<Cow<'a, str>>,
    /// `attributeRequests`: attribute changes on this account.
    pub attribute_requests: Maybe<Vec<AttributeRequest<'a>>>,
    /// Keys the schema does not define.
    pub extra: Extra,
}

/// The source of an account request (SDK: `ProvisioningCompletedAccountRequestsInnerSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef<'a> {
    /// `id`: the source's ID.
    pub id: Cow<'a, str>,
    /// `type`: always `SOURCE` in the published schema.
    pub kind: SourceType,
    /// `name`: the source's name.
    pub name: Cow<'a, str>,
    /// Keys the schema does not define.
    pub extra: Extra,
}

/// One attribute change on an account (SDK:
/// `ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeRequest<'a> {
    /// `attributeName`: the attribute's name.
    pub attribute_name: Cow<'a, str>,
    /// `attributeValue`: the value; a string in the published schema.
    pub attribute_value: Maybe<AttributeValue<'a>>,
    /// `operation`: what was done with the value.
    pub operation: AttributeOperation,
    /// Keys the schema does not define.
    pub extra: Extra,
}

/// The value of an attribute change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue<'a> {
    /// A string, as the published schema has it.
    Single(Cow<'a, str>),
    /// An array of strings: a multi-valued attribute, as ISC's account-activity data has them.
    /// Accepted by lenient validation only.
    Multi(Vec<Cow<'a, str>>),
}

impl<'a> AttributeValue<'a> {
    /// Every value, one for a single value.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        let slice: &[Cow<'a, str>] = match self {
            AttributeValue::Single(value) => std::slice::from_ref(value),
            AttributeValue::Multi(values) => values,
        };
        slice.iter().map(|value| value.as_ref())
    }
}

/// The `_metadata` envelope that ISC's trigger service adds to what it posts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata<'a> {
    /// `triggerId`, e.g. `idn:post-provisioning`.
    pub trigger_id: Option<Cow<'a, str>>,
    /// `triggerType`, e.g. `fireAndForget`.
    pub trigger_type: Option<Cow<'a, str>>,
    /// `invocationId`: unique per event and subscription; the natural deduplication key.
    pub invocation_id: Option<Cow<'a, str>>,
    /// Other keys of the envelope, and known keys whose value was not a string.
    pub extra: Extra,
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value the published schema does not list, kept verbatim (ISC adds values over time).
            Unknown(String),
        }

        impl $name {
            /// The values the published schema lists, as they appear on the wire.
            pub const KNOWN: &'static [&'static str] = &[$($wire),+];

            /// Reads a wire value; anything not listed becomes `Unknown`, verbatim.
            pub fn from_wire(value: &str) -> Self {
                match value {
                    $($wire => $name::$variant,)+
                    other => $name::Unknown(other.to_owned()),
                }
            }

            /// Like [`Self::from_wire`], but takes ownership so that an unknown value is not copied.
            pub fn from_wire_owned(value: String) -> Self {
                match value.as_str() {
                    $($wire => $name::$variant,)+
                    _ => $name::Unknown(value),
                }
            }

            /// The value as it appears on the wire.
            pub fn as_wire(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown(other) => other,
                }
            }

            /// True for a value the published schema lists.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_wire())
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                $name::from_wire(value)
            }
        }
    };
}

wire_enum! {
    /// `provisioningResult` of an account request.
    ProvisioningResult {
        /// `SUCCESS`: provisioned.
        Success = "SUCCESS",
        /// `PENDING`: not finished yet (for example waiting on a service-desk ticket).
        Pending = "PENDING",
        /// `FAILED`: provisioning failed.
        Failed = "FAILED",
    }
}

wire_enum! {
    /// `operation` of an attribute request.
    AttributeOperation {
        /// `Add`: add a value (multi-valued attributes).
        Add = "Add",
        /// `Set`: replace the value.
        Set = "Set",
        /// `Remove`: remove a value.
        Remove = "Remove",
    }
}

wire_enum! {
    /// `type` of the recipient and requester.
    IdentityType {
        /// `IDENTITY`.
        Identity = "IDENTITY",
    }
}

wire_enum! {
    /// `type` of a source reference.
    SourceType {
        /// `SOURCE`.
        Source = "SOURCE",
    }
}

wire_enum! {
    /// The known values of the free-text `accountOperation` (the beta spec's enum). The field itself
    /// stays a string: see [`AccountRequest::operation`].
    AccountOperation {
        /// `Create`.
        Create = "Create",
        /// `Modify`.
        Modify = "Modify",
        /// `Enable`.
        Enable = "Enable",
        /// `Disable`.
        Disable = "Disable",
        /// `Unlock`.
        Unlock = "Unlock",
        /// `Delete`.
        Delete = "Delete",
    }
}

wire_enum! {
    /// The values of the free-text `action` seen in ISC's events. The field itself stays a string:
    /// see [`ProvisioningCompleted::known_action`].
    Action {
        /// `IdentityRefresh`: an identity refresh (lifecycle, role or attribute change).
        IdentityRefresh = "IdentityRefresh",
        /// `Access Request`: a request made in ISC.
        AccessRequest = "Access Request",
        /// `Certification`: a certification campaign's revocation.
        Certification = "Certification",
    }
}

/// The overall outcome of an event, from the results of its account requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every account request succeeded.
    Succeeded,
    /// None failed, and at least one is still pending.
    Pending,
    /// Some failed and some did not.
    PartiallyFailed,
    /// Every account request failed.
    Failed,
    /// None failed or is pending, but at least one result is a value the schema does not list.
    Unknown,
    /// The event has no account requests.
    NoRequests,
}

impl Outcome {
    /// A lowercase name for output and storage: `succeeded`, `pending`, `partially_failed`,
    /// `failed`, `unknown`, `no_requests`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Pending => "pending",
            Outcome::PartiallyFailed => "partially_failed",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::NoRequests => "no_requests",
        }
    }

    /// True when at least one account request failed.
    pub fn has_failures(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::PartiallyFailed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many account requests ended in each result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResultCounts {
    /// `SUCCESS`.
    pub success: usize,
    /// `PENDING`.
    pub pending: usize,
    /// `FAILED`.
    pub failed: usize,
    /// Values the schema does not list.
    pub unknown: usize,
}

impl ResultCounts {
    /// All account requests.
    pub fn total(&self) -> usize {
        self.success + self.pending + self.failed + self.unknown
    }
}

impl<'a> ProvisioningCompleted<'a> {
    /// An event with its required fields; set the optional ones with the `with_*` methods.
    pub fn new(
        tracking_number: impl Into<Cow<'a, str>>,
        sources: impl Into<Cow<'a, str>>,
        recipient: IdentityRef<'a>,
        account_requests: Vec<AccountRequest<'a>>,
    ) -> Self {
        ProvisioningCompleted {
            tracking_number: tracking_number.into(),
            sources: sources.into(),
            action: Maybe::Absent,
            errors: Maybe::Absent,
            warnings: Maybe::Absent,
            recipient,
            requester: Maybe::Absent,
            account_requests,
            metadata: None,
            extra: Extra::new(),
        }
    }

    /// Sets `action`.
    pub fn with_action(mut self, action: impl Into<Cow<'a, str>>) -> Self {
        self.action = Maybe::Value(action.into());
        self
    }

    /// Sets `errors`.
    pub fn with_errors<S: Into<Cow<'a, str>>>(
        mut self,
        errors: impl IntoIterator<Item = S>,
    ) -> Self {
        self.errors = Maybe::Value(errors.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `warnings`.
    pub fn with_warnings<S: Into<Cow<'a, str>>>(
        mut self,
        warnings: impl IntoIterator<Item = S>,
    ) -> Self {
        self.warnings = Maybe::Value(warnings.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `requester`.
    pub fn with_requester(mut self, requester: IdentityRef<'a>) -> Self {
        self.requester = Maybe::Value(requester);
        self
    }

    /// Sets the `_metadata` envelope.
    pub fn with_metadata(mut self, metadata: Metadata<'a>) -> Self {
        self.metadata = Some(Box::new(metadata));
        self
    }

    /// Adds a key the schema does not define. A key that names a field the event writes
    /// (`trackingNumber`, `action` when it is set, …) is kept but not written: see [`Extra`].
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// The source names listed in `sources` (split on commas, trimmed, empty names dropped).
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
    }

    /// `action`, if it is one of the values seen in ISC's events.
    pub fn known_action(&self) -> Option<Action> {
        self.action
            .as_option()
            .map(|action| Action::from_wire(action))
            .filter(Action::is_known)
    }

    /// The `invocationId` of the delivery envelope, if there is one.
    pub fn invocation_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.invocation_id.as_deref()
    }

    /// `errors`, empty when absent or `null`.
    pub fn error_messages(&self) -> &[Cow<'a, str>] {
        self.errors.as_option().map_or(&[], Vec::as_slice)
    }

    /// `warnings`, empty when absent or `null`.
    pub fn warning_messages(&self) -> &[Cow<'a, str>] {
        self.warnings.as_option().map_or(&[], Vec::as_slice)
    }

    /// How many account requests ended in each result.
    pub fn counts(&self) -> ResultCounts {
        let mut counts = ResultCounts::default();
        for request in &self.account_requests {
            match request.provisioning_result {
                ProvisioningResult::Success => counts.success += 1,
                ProvisioningResult::Pending => counts.pending += 1,
                ProvisioningResult::Failed => counts.failed += 1,
                ProvisioningResult::Unknown(_) => counts.unknown += 1,
            }
        }
        counts
    }

    /// The overall outcome, from the results of the account requests.
    pub fn outcome(&self) -> Outcome {
        let counts = self.counts();
        let total = counts.total();
        if total == 0 {
            Outcome::NoRequests
        } else if counts.failed == total {
            Outcome::Failed
        } else if counts.failed > 0 {
            Outcome::PartiallyFailed
        } else if counts.pending > 0 {
            Outcome::Pending
        } else if counts.unknown > 0 {
            Outcome::Unknown
        } else {
            Outcome::Succeeded
        }
    }

    /// The account requests whose result is `FAILED`.
    pub fn failed_account_requests(&self) -> impl Iterator<Item = &AccountRequest<'a>> {
        self.account_requests
            .iter()
            .filter(|request| request.provisioning_result == ProvisioningResult::Failed)
    }

    /// Every attribute request of every account request.
    pub fn attribute_requests(&self) -> impl Iterator<Item = &AttributeRequest<'a>> {
        self.account_requests
            .iter()
            .flat_map(|request| request.attribute_requests.as_option().into_iter().flatten())
    }

    /// The `ticketId`s of the account requests that have one, in order, without repeats.
    pub fn ticket_ids(&self) -> Vec<&str> {
        let mut tickets: Vec<&str> = Vec::new();
        for request in &self.account_requests {
            if let Some(ticket) = request.ticket_id.as_option() {
                if !tickets.contains(&ticket.as_ref()) {
                    tickets.push(ticket);
                }
            }
        }
        tickets
    }
}

impl fmt::Display for ProvisioningCompleted<'_> {
    /// One line for people: tracking number, action, recipient and outcome. Use
    /// [`ProvisioningCompleted::to_json_pretty`] for the JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.counts();
        write!(f, "{}", self.tracking_number)?;
        if let Some(action) = self.action.as_option() {
            write!(f, " ({action})")?;
        }
        write!(
            f,
            " for {} [{}]: {} account request{}",
            self.recipient.name,
            self.recipient.id,
            counts.total(),
            if counts.total() == 1 { "" } else { "s" }
        )?;
        let parts = [
            (counts.success, "succeeded"),
            (counts.pending, "pending"),
            (counts.failed, "failed"),
            (counts.unknown, "with an unknown result"),
        ];
        for (count, label) in parts {
            if count > 0 {
                write!(f, ", {count} {label}")?;
            }
        }
        Ok(())
    }
}

impl<'a> IdentityRef<'a> {
    /// An identity reference of type `IDENTITY`.
    pub fn new(id: impl Into<Cow<'a, str>>, name: impl Into<Cow<'a, str>>) -> Self {
        IdentityRef {
            kind: IdentityType::Identity,
            id: id.into(),
            name: name.into(),
            extra: Extra::new(),
        }
    }
}

impl<'a> SourceRef<'a> {
    /// A source reference of type `SOURCE`.
    pub fn new(id: impl Into<Cow<'a, str>>, name: impl Into<Cow<'a, str>>) -> Self {
        SourceRef {
            id: id.into(),
            kind: SourceType::Source,
            name: name.into(),
            extra: Extra::new(),
        }
    }
}

impl<'a> AccountRequest<'a> {
    /// An account request with its required fields; set the optional ones with the `with_*`
    /// methods.
    pub fn new(
        source: SourceRef<'a>,
        account_operation: impl Into<Cow<'a, str>>,
        provisioning_result: ProvisioningResult,
        provisioning_target: impl Into<Cow<'a, str>>,
    ) -> Self {
        AccountRequest {
            source,
            account_id: Maybe::Absent,
            account_operation: account_operation.into(),
            provisioning_result,
            provisioning_target: provisioning_target.into(),
            ticket_id: Maybe::Absent,
            attribute_requests: Maybe::Absent,
            extra: Extra::new(),
        }
    }

    /// Sets `accountId`.
    pub fn with_account_id(mut self, account_id: impl Into<Cow<'a, str>>) -> Self {
        self.account_id = Maybe::Value(account_id.into());
        self
    }

    /// Sets `ticketId`.
    pub fn with_ticket_id(mut self, ticket_id: impl Into<Cow<'a, str>>) -> Self {
        self.ticket_id = Maybe::Value(ticket_id.into());
        self
    }

    /// Sets `attributeRequests`.
    pub fn with_attribute_requests(mut self, requests: Vec<AttributeRequest<'a>>) -> Self {
        self.attribute_requests = Maybe::Value(requests);
        self
    }

    /// `accountOperation` read as one of its known values (`Unknown` keeps anything else).
    pub fn operation(&self) -> AccountOperation {
        AccountOperation::from_wire(&self.account_operation)
    }

    /// True when the result is `FAILED`.
    pub fn failed(&self) -> bool {
        self.provisioning_result == ProvisioningResult::Failed
    }
}

impl<'a> AttributeRequest<'a> {
    /// An attribute request without a value; set one with [`AttributeRequest::with_value`].
    pub fn new(attribute_name: impl Into<Cow<'a, str>>, operation: AttributeOperation) -> Self {
        AttributeRequest {
            attribute_name: attribute_name.into(),
            attribute_value: Maybe::Absent,
            operation,
            extra: Extra::new(),
        }
    }

    /// Sets a single-valued `attributeValue`.
    pub fn with_value(mut self, value: impl Into<Cow<'a, str>>) -> Self {
        self.attribute_value = Maybe::Value(AttributeValue::Single(value.into()));
        self
    }

    /// Sets a multi-valued `attributeValue` (outside the published schema: strict validation
    /// rejects it).
    pub fn with_values<S: Into<Cow<'a, str>>>(
        mut self,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        self.attribute_value = Maybe::Value(AttributeValue::Multi(
            values.into_iter().map(Into::into).collect(),
        ));
        self
    }
}

impl<'a> Metadata<'a> {
    /// The envelope ISC adds to a Provisioning Completed event with this invocation id.
    pub fn provisioning_completed(invocation_id: impl Into<Cow<'a, str>>) -> Self {
        Metadata {
            trigger_id: Some(Cow::Borrowed("idn:post-provisioning")),
            trigger_type: Some(Cow::Borrowed("fireAndForget")),
            invocation_id: Some(invocation_id.into()),
            extra: Extra::new(),
        }
    }
}

// Which keys of `extra` the writers leave out because the object writes a field of that name (see
// [`Extra`]); `crate::encode` and `crate::write` both ask.

impl ProvisioningCompleted<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        match key {
            "trackingNumber" | "sources" | "recipient" | "accountRequests" => true,
            "action" => !self.action.is_absent(),
            "errors" => !self.errors.is_absent(),
            "warnings" => !self.warnings.is_absent(),
            "requester" => !self.requester.is_absent(),
            "_metadata" => self.metadata.is_some(),
            _ => false,
        }
    }
}

impl IdentityRef<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        matches!(key, "type" | "id" | "name")
    }
}

impl SourceRef<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        matches!(key, "id" | "type" | "name")
    }
}

impl AccountRequest<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        match key {
            "source" | "accountOperation" | "provisioningResult" | "provisioningTarget" => true,
            "accountId" => !self.account_id.is_absent(),
            "ticketId" => !self.ticket_id.is_absent(),
            "attributeRequests" => !self.attribute_requests.is_absent(),
            _ => false,
        }
    }
}

impl AttributeRequest<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        match key {
            "attributeName" | "operation" => true,
            "attributeValue" => !self.attribute_value.is_absent(),
            _ => false,
        }
    }
}

impl Metadata<'_> {
    pub(crate) fn writes_field(&self, key: &str) -> bool {
        match key {
            "triggerId" => self.trigger_id.is_some(),
            "triggerType" => self.trigger_type.is_some(),
            "invocationId" => self.invocation_id.is_some(),
            _ => false,
        }
    }
}

/// Turns a borrowed value into one that owns its text, so that it can outlive the input.
fn own(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

fn own_list(list: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
    list.into_iter().map(own).collect()
}

impl ProvisioningCompleted<'_> {
    /// A copy that owns all of its text and no longer borrows the input it was read from.
    pub fn into_owned(self) -> ProvisioningCompleted<'static> {
        ProvisioningCompleted {
            tracking_number: own(self.tracking_number),
            sources: own(self.sources),
            action: self.action.map(own),
            errors: self.errors.map(own_list),
            warnings: self.warnings.map(own_list),
            recipient: self.recipient.into_owned(),
            requester: self.requester.map(IdentityRef::into_owned),
            account_requests: self
                .account_requests
                .into_iter()
                .map(AccountRequest::into_owned)
                .collect(),
            metadata: self
                .metadata
                .map(|metadata| Box::new(metadata.into_owned())),
            extra: self.extra,
        }
    }
}

impl IdentityRef<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> IdentityRef<'static> {
        IdentityRef {
            kind: self.kind,
            id: own(self.id),
            name: own(self.name),
            extra: self.extra,
        }
    }
}

impl SourceRef<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> SourceRef<'static> {
        SourceRef {
            id: own(self.id),
            kind: self.kind,
            name: own(self.name),
            extra: self.extra,
        }
    }
}

impl AccountRequest<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> AccountRequest<'static> {
        AccountRequest {
            source: self.source.into_owned(),
            account_id: self.account_id.map(own),
            account_operation: own(self.account_operation),
            provisioning_result: self.provisioning_result,
            provisioning_target: own(self.provisioning_target),
            ticket_id: self.ticket_id.map(own),
            attribute_requests: self
                .attribute_requests
                .map(|list| list.into_iter().map(AttributeRequest::into_owned).collect()),
            extra: self.extra,
        }
    }
}

impl AttributeRequest<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> AttributeRequest<'static> {
        AttributeRequest {
            attribute_name: own(self.attribute_name),
            attribute_value: self.attribute_value.map(AttributeValue::into_owned),
            operation: self.operation,
            extra: self.extra,
        }
    }
}

impl AttributeValue<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> AttributeValue<'static> {
        match self {
            AttributeValue::Single(value) => AttributeValue::Single(own(value)),
            AttributeValue::Multi(values) => AttributeValue::Multi(own_list(values)),
        }
    }
}

impl Metadata<'_> {
    /// A copy that owns all of its text.
    pub fn into_owned(self) -> Metadata<'static> {
        Metadata {
            trigger_id: self.trigger_id.map(own),
            trigger_type: self.trigger_type.map(own),
            invocation_id: self.invocation_id.map(own),
            extra: self.extra,
        }
    }
}
