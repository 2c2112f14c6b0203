//! Jayway's `Option` flags.

/// The evaluation options of Jayway's `Configuration` (`com.jayway.jsonpath.Option`). The
/// default (all off) is Jayway's default configuration, which ISC uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// `DEFAULT_PATH_LEAF_TO_NULL`: a missing leaf property yields `null` instead of nothing.
    pub default_path_leaf_to_null: bool,
    /// `ALWAYS_RETURN_LIST`: a definite path's value is wrapped in a list.
    pub always_return_list: bool,
    /// `AS_PATH_LIST`: the answer is the list of locations (`$['a'][0]`) instead of values.
    pub as_path_list: bool,
    /// `SUPPRESS_EXCEPTIONS`: missing paths give `null` (definite) or `[]` instead of
    /// `PathNotFound`; errors raised by functions and operators still propagate.
    pub suppress_exceptions: bool,
    /// `REQUIRE_PROPERTIES`: a missing property fails even on indefinite paths.
    pub require_properties: bool,
}

impl Options {
    /// Sets an option by its Jayway name (`"SUPPRESS_EXCEPTIONS"`, …); `false` for an unknown
    /// name.
    pub fn set_by_name(&mut self, name: &str) -> bool {
        match name {
            "DEFAULT_PATH_LEAF_TO_NULL" => self.default_path_leaf_to_null = true,
            "ALWAYS_RETURN_LIST" => self.always_return_list = true,
            "AS_PATH_LIST" => self.as_path_list = true,
            "SUPPRESS_EXCEPTIONS" => self.suppress_exceptions = true,
            "REQUIRE_PROPERTIES" => self.require_properties = true,
            _ => return false,
        }
        true
    }
}
