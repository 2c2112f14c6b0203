//! The search index's tokens. Every exact key of an event becomes one token `\u{E000}<kind><16
//! hex>`: a stable 64-bit hash of the value, trimmed and lowercased (a result as it is), so that
//! any value (a DN with commas, a name with spaces) is a single token the full-text tokenizer
//! keeps whole, and a lookup is one term. Free text (errors, warnings, names, account ids,
//! attribute values) is indexed as words.
//!
//! The first character is a private-use one: the tokenizer keeps it in a token, and the words of
//! a free-text query never hold it (they are split at everything but letters and digits), so no
//! word or prefix a person searches for (`x*`) can find a key.
//!
//! The tokens are part of the stored format ([`TOKEN_FORMAT`]): changing them means re-indexing,
//! which an index of another format gets at the next start.

/// The form of the tokens, recorded in the index: 1 for `x<kind><hex>` with every value
/// lowercased, 2 for the private-use mark, results kept as they are, and every value and text
/// in Unicode's composed form (NFC); 3 for source-result pairs whose values fold Greek final
/// sigma as every other key does, and text whose private-use characters are read as spaces.
pub const TOKEN_FORMAT: i64 = 3;

/// The mark that starts every key token.
const MARK: char = '\u{E000}';

use crate::store::{EventQuery, SearchFields};

/// What a token stands for; the letter goes into the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Tracking,
    Invocation,
    Identity,
    Source,
    Account,
    Ticket,
    Result,
    SourceResult,
    Operation,
    Action,
    Channel,
}

impl KeyKind {
    fn letter(self) -> char {
        match self {
            KeyKind::Tracking => 't',
            KeyKind::Invocation => 'i',
            KeyKind::Identity => 'p',
            KeyKind::Source => 's',
            KeyKind::Account => 'a',
            KeyKind::Ticket => 'k',
            KeyKind::Result => 'r',
            KeyKind::SourceResult => 'q',
            KeyKind::Operation => 'o',
            KeyKind::Action => 'n',
            KeyKind::Channel => 'c',
        }
    }
}

/// FNV-1a over the trimmed value, lowercased when `fold_case`, then a SplitMix64 finalizer for
/// good mixing. Stable across builds and platforms (unlike `std`'s hasher).
fn hash_of(value: &str, fold_case: bool) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let value = value.trim();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    if !fold_case {
        for byte in value.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    } else if value.is_ascii() {
        // Nearly every key is ASCII; lowercasing it byte by byte gives the same bytes as the
        // Unicode path below, without decoding characters.
        for byte in value.bytes() {
            hash ^= u64::from(byte.to_ascii_lowercase());
            hash = hash.wrapping_mul(PRIME);
        }
    } else {
        for c in value
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == 'ς' { 'σ' } else { c })
        {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The token of one key.
pub fn token(kind: KeyKind, value: &str) -> String {
    let mut token = String::with_capacity(18);
    push_token(&mut token, kind, value);
    token
}

/// `text` in Unicode's composed form (NFC): `É` typed as `E` and a combining accent is the `É`
/// of another keyboard, the same key and the same word. (The tokenizer would split the
/// decomposed form at the accent.)
pub(crate) fn composed(text: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfc_quick};
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        text.into()
    } else {
        text.nfc().collect::<String>().into()
    }
}

/// A value as the exact filters compare it: composed, trimmed, lowercased, with the final sigma
/// as any sigma (`ΟΔΟΣ` lowercases to `οδος`, which is `οδοσ` to a person). The tokens hash
/// this form of a value (a result's case aside).
pub(crate) fn value_key(value: &str) -> String {
    composed(value.trim())
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect()
}

fn push_token(out: &mut String, kind: KeyKind, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let value = composed(value);
    let value = value.as_ref();
    out.push(MARK);
    out.push(kind.letter());
    // A result is a value of the schema's enumeration, kept verbatim when unknown: `success` is
    // not `SUCCESS` (outcomes and statistics count it as unknown), so its case is kept.
    let hash = hash_of(
        value,
        !matches!(kind, KeyKind::Result | KeyKind::SourceResult),
    );
    for shift in (0..16).rev() {
        out.push(char::from(HEX[((hash >> (shift * 4)) & 0xf) as usize]));
    }
}

/// The token value of a source and a result seen on the same account request: the source's case
/// folded, the result's kept (see [`push_token`]).
fn pair_value(source: &str, result: &str) -> String {
    format!("{}\u{0}{}", value_key(source), result.trim())
}

/// The index document of an event: its key tokens, then its free text.
pub fn document(
    fields: &SearchFields,
    invocation_id: Option<&str>,
    channel: Option<&str>,
) -> String {
    let mut doc = String::with_capacity(64 * 20 + fields.text.len());
    let mut add = |kind: KeyKind, value: &str| {
        if !value.trim().is_empty() {
            push_token(&mut doc, kind, value);
            doc.push(' ');
        }
    };
    add(KeyKind::Tracking, &fields.tracking_number);
    if let Some(invocation_id) = invocation_id {
        add(KeyKind::Invocation, invocation_id);
    }
    add(KeyKind::Identity, &fields.recipient_id);
    add(KeyKind::Identity, &fields.recipient_name);
    if let Some(id) = &fields.requester_id {
        add(KeyKind::Identity, id);
    }
    if let Some(name) = &fields.requester_name {
        add(KeyKind::Identity, name);
    }
    if let Some(action) = &fields.action {
        add(KeyKind::Action, action);
    }
    if let Some(channel) = channel {
        add(KeyKind::Channel, channel);
    }
    for account in &fields.accounts {
        add(KeyKind::Source, &account.source_id);
        add(KeyKind::Source, &account.source_name);
        add(KeyKind::Result, &account.result);
        add(
            KeyKind::SourceResult,
            &pair_value(&account.source_id, &account.result),
        );
        add(
            KeyKind::SourceResult,
            &pair_value(&account.source_name, &account.result),
        );
        add(KeyKind::Operation, &account.operation);
        if let Some(account_id) = &account.account_id {
            add(KeyKind::Account, account_id);
        }
        if let Some(ticket) = &account.ticket_id {
            add(KeyKind::Ticket, ticket);
        }
    }
    doc.push('\n');
    // Without private-use characters, which begin the key tokens only: a word of an event's
    // text must never be taken for a key (an event naming itself after another's tracking
    // number's token would be found by it).
    let text = composed(&fields.text);
    if text.contains(crate::store::is_private_use) {
        doc.extend(text.chars().map(|c| {
            if crate::store::is_private_use(c) {
                ' '
            } else {
                c
            }
        }));
    } else {
        doc.push_str(&text);
    }
    doc
}

/// The index document of a stored event, rebuilt from its body as received (the same document
/// the request that stored it built). A body that no longer reads as an event (stored by a
/// build with other rules) is indexed by its channel and invocation id alone.
pub fn document_of_raw(raw: &[u8], invocation_id: Option<&str>, channel: Option<&str>) -> String {
    // Whatever fields still read are indexed, even if the body has errors under today's rules.
    match provtrail_model::validate_slice(raw, &crate::ingest::stored_options()) {
        Ok(provtrail_model::Validation {
            event: Some(event), ..
        }) => document(
            &crate::ingest::search_fields(&event),
            invocation_id,
            channel,
        ),
        _ => document(&SearchFields::default(), invocation_id, channel),
    }
}

/// The full-text query for the index filters of `query`, if it has any.
pub fn match_expression(query: &EventQuery) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut key = |kind: KeyKind, value: &Option<String>| {
        if let Some(value) = value.as_deref().filter(|value| !value.trim().is_empty()) {
            terms.push(token(kind, value));
        }
    };
    key(KeyKind::Tracking, &query.tracking_number);
    key(KeyKind::Invocation, &query.invocation_id);
    key(KeyKind::Identity, &query.identity);
    key(KeyKind::Account, &query.account_id);
    key(KeyKind::Ticket, &query.ticket_id);
    key(KeyKind::Operation, &query.operation);
    key(KeyKind::Action, &query.action);
    key(KeyKind::Channel, &query.channel);
    let source = query.source.as_deref().filter(|s| !s.trim().is_empty());
    let result = query.result.as_deref().filter(|s| !s.trim().is_empty());
    match (source, result) {
        // Both on the same account request, not one on each.
        (Some(source), Some(result)) => {
            terms.push(token(KeyKind::SourceResult, &pair_value(source, result)));
        }
        (Some(source), None) => terms.push(token(KeyKind::Source, source)),
        (None, Some(result)) => terms.push(token(KeyKind::Result, result)),
        (None, None) => {}
    }
    if let Some(q) = &query.q {
        terms.extend(words(q));
    }
    // A word said twice finds what it finds once; each term costs a pass over its part of the
    // index.
    let mut seen = std::collections::HashSet::new();
    terms.retain(|term| seen.insert(term.clone()));
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" AND "))
    }
}

/// Most distinct words a free-text query may hold: each is a pass over the index (a prefix
/// word, over every word it begins), so that hundreds of them keep a reader busy for minutes
/// on a large store.
pub const MAX_QUERY_WORDS: usize = 32;

/// How many distinct words the free-text query `q` searches for.
pub fn query_word_count(q: &str) -> usize {
    words(q)
        .into_iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// The words of a free-text query as quoted terms (so that nothing in them is read as query
/// syntax); a trailing `*` on a word asks for a prefix match.
fn words(q: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let q = composed(q);
    for raw in q.split_whitespace() {
        let prefix = raw.ends_with('*');
        // Split like the index's tokenizer does: on anything that is not part of a word.
        let parts: Vec<&str> = raw
            .split(|c: char| !crate::store::is_query_word_char(c))
            .filter(|part| !part.is_empty())
            .collect();
        let last = parts.len().saturating_sub(1);
        for (index, part) in parts.iter().enumerate() {
            let quoted = format!("\"{}\"", part.to_lowercase());
            if prefix && index == last {
                terms.push(format!("{quoted}*"));
            } else {
                terms.push(quoted);
            }
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_single_words_and_ignore_case() {
        let a = token(KeyKind::Identity, "William Wilson");
        assert_eq!(a, token(KeyKind::Identity, "  william WILSON "));
        assert_ne!(a, token(KeyKind::Source, "William Wilson"));
        assert_eq!(a.chars().count(), 18);
        assert!(a.chars().skip(1).all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            token(KeyKind::Tracking, "abc"),
            "\u{E000}t".to_owned() + &format!("{:016x}", hash_of("abc", true))
        );
        // A result keeps its case: an unknown `success` is not `SUCCESS`.
        assert_ne!(
            token(KeyKind::Result, "success"),
            token(KeyKind::Result, "SUCCESS")
        );
        assert_eq!(
            token(KeyKind::Result, " SUCCESS"),
            token(KeyKind::Result, "SUCCESS")
        );
    }

    #[test]
    fn tokens_are_part_of_the_stored_format() {
        // Stored indexes hold these tokens: changing a value here means re-indexing every store.
        for (kind, value, expected) in [
            (KeyKind::Tracking, "abc", "\u{E000}t29e32c04ec3f9c30"),
            (
                KeyKind::Identity,
                " William WILSON ",
                "\u{E000}p93baa72689df3f43",
            ),
            (KeyKind::Source, "Ökonomie AD", "\u{E000}s22db897d767b6823"),
            (
                KeyKind::Account,
                "CN=İlker Öz,OU=Users",
                "\u{E000}a785d953d40c9b1d9",
            ),
        ] {
            assert_eq!(token(kind, value), expected, "{value}");
        }
    }

    #[test]
    fn free_text_is_quoted_so_that_it_cannot_inject_query_syntax() {
        let query = EventQuery {
            q: Some(r#"timed OR "out NEAR( CN=Rob* "#.to_owned()),
            ..EventQuery::default()
        };
        assert_eq!(
            match_expression(&query).unwrap(),
            r#""timed" AND "or" AND "out" AND "near" AND "cn" AND "rob"*"#
        );
    }

    #[test]
    fn source_and_result_together_use_the_pair_token() {
        let query = EventQuery {
            source: Some("Corp AD".into()),
            result: Some("FAILED".into()),
            ..EventQuery::default()
        };
        let expression = match_expression(&query).unwrap();
        assert_eq!(
            expression,
            token(KeyKind::SourceResult, &pair_value("Corp AD", "FAILED"))
        );
        assert_eq!(match_expression(&EventQuery::default()), None);
        // The source's case is folded as in every other value filter, Greek final sigma too.
        let pair = |source: &str| {
            match_expression(&EventQuery {
                source: Some(source.into()),
                result: Some("FAILED".into()),
                ..EventQuery::default()
            })
        };
        assert_eq!(pair("οδοσ σύστημα"), pair("ΟΔΟΣ Σύστημα"));
        assert_eq!(pair("οδοσ σύστημα"), pair("οδος σύστημα"));
    }

    #[test]
    fn no_word_of_a_query_or_of_an_event_can_be_a_key_token() {
        let tracking = token(KeyKind::Tracking, "tn-1");
        // A query that types a key token, or the start of one, searches plain words.
        let query = |q: &str| {
            match_expression(&EventQuery {
                q: Some(q.to_owned()),
                ..EventQuery::default()
            })
            .unwrap()
        };
        assert_eq!(query("\u{E000}t*"), r#""t"*"#);
        assert!(!query(&tracking).contains(MARK), "{}", query(&tracking));
        // An event whose text holds another's key token has it as plain words only.
        let fields = SearchFields {
            text: format!("name {tracking}"),
            ..SearchFields::default()
        };
        let doc = document(&fields, None, None);
        assert_eq!(doc.matches(MARK).count(), 0, "{doc:?}");
        assert!(
            doc.ends_with(&format!("name  {}", &tracking[MARK.len_utf8()..])),
            "{doc:?}"
        );
    }
}
