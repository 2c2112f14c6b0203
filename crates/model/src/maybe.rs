//! [`Maybe`]: a field that can be absent, `null`, or hold a value, kept apart so that a round trip
//! writes back exactly what was read.

/// An optional field that remembers whether it was absent or explicitly `null`.
///
/// The published schema marks several fields optional and nullable (`action`, `errors`,
/// `requester`, …). ISC sends both forms, and a faithful trail must write back what it received,
/// so `Option<T>` (which would merge the two) is not enough.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Maybe<T> {
    /// The key was not in the document.
    #[default]
    Absent,
    /// The key was present with the value `null`.
    Null,
    /// The key was present with a value.
    Value(T),
}

impl<T> Maybe<T> {
    /// The value, if there is one (absent and `null` both give `None`).
    pub fn as_option(&self) -> Option<&T> {
        match self {
            Maybe::Value(value) => Some(value),
            Maybe::Absent | Maybe::Null => None,
        }
    }

    /// The value as a mutable reference, if there is one.
    pub fn as_option_mut(&mut self) -> Option<&mut T> {
        match self {
            Maybe::Value(value) => Some(value),
            Maybe::Absent | Maybe::Null => None,
        }
    }

    /// The value through `Deref` (`&str` for text), if there is one.
    pub fn as_deref(&self) -> Option<&T::Target>
    where
        T: std::ops::Deref,
    {
        self.as_option().map(|value| &**value)
    }

    /// Consumes the field and gives its value, if there is one.
    pub fn into_option(self) -> Option<T> {
        match self {
            Maybe::Value(value) => Some(value),
            Maybe::Absent | Maybe::Null => None,
        }
    }

    /// True when the key was not in the document.
    pub fn is_absent(&self) -> bool {
        matches!(self, Maybe::Absent)
    }

    /// True when the key was present with `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Maybe::Null)
    }

    /// True when the field holds a value.
    pub fn is_value(&self) -> bool {
        matches!(self, Maybe::Value(_))
    }

    /// Maps the value, keeping absent and `null` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Maybe<U> {
        match self {
            Maybe::Absent => Maybe::Absent,
            Maybe::Null => Maybe::Null,
            Maybe::Value(value) => Maybe::Value(f(value)),
        }
    }

    /// Borrows the value inside.
    pub fn as_ref(&self) -> Maybe<&T> {
        match self {
            Maybe::Absent => Maybe::Absent,
            Maybe::Null => Maybe::Null,
            Maybe::Value(value) => Maybe::Value(value),
        }
    }
}

impl<T> From<Option<T>> for Maybe<T> {
    /// `Some` becomes a value and `None` becomes absent (not `null`).
    fn from(option: Option<T>) -> Self {
        match option {
            Some(value) => Maybe::Value(value),
            None => Maybe::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_null_are_different_but_both_have_no_value() {
        let absent: Maybe<String> = Maybe::Absent;
        let null: Maybe<String> = Maybe::Null;
        assert_ne!(absent, null);
        assert_eq!(absent.as_option(), None);
        assert_eq!(null.as_option(), None);
        assert!(absent.is_absent() && !absent.is_null());
        assert!(null.is_null() && !null.is_absent());
    }

    #[test]
    fn from_option_maps_none_to_absent() {
        assert_eq!(Maybe::from(None::<u8>), Maybe::Absent);
        assert_eq!(Maybe::from(Some(1)), Maybe::Value(1));
        assert_eq!(Maybe::Value(2).map(|v| v * 2), Maybe::Value(4));
    }
}
