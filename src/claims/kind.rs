//! The rule types and their parameters, shared by both written forms.

use super::path::problem;
use crate::config::Problem;

/// Every type, for messages that list them.
pub(super) const TYPES: &str =
    "exist, not, equal, regex, any_of, all_of, in, list_any_of, list_all_of";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Exist,
    Not,
    Equal,
    Regex,
    AnyOf,
    AllOf,
    In,
    ListAnyOf,
    ListAllOf,
}

impl Kind {
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "exist" => Self::Exist,
            "not" => Self::Not,
            "equal" => Self::Equal,
            // `matches_regex`: the name the original's documentation gives the rule.
            "regex" | "matches_regex" => Self::Regex,
            "any_of" => Self::AnyOf,
            "all_of" => Self::AllOf,
            "in" => Self::In,
            "list_any_of" => Self::ListAnyOf,
            "list_all_of" => Self::ListAllOf,
            _ => return None,
        })
    }

    /// Parameter names in the list form's order; the first `required` of them must be given.
    pub(super) fn params(self) -> (&'static [&'static str], usize) {
        match self {
            Self::Exist => (&[], 0),
            Self::Not | Self::ListAnyOf | Self::ListAllOf => (&["validator"], 1),
            Self::Equal => (&["value"], 1),
            Self::Regex => (&["regex", "full_match"], 1),
            Self::AnyOf | Self::AllOf => (&["validators"], 1),
            Self::In => (&["path", "validator"], 1),
        }
    }
}

pub(super) fn unknown_type(at: &str, name: &str) -> Problem {
    let shown: String = name.chars().take(40).collect();
    problem(
        at,
        format!("unknown rule type `{shown}`; expected one of {TYPES}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_every_listed_type() {
        for name in TYPES.split(", ") {
            assert!(Kind::from_name(name).is_some(), "{name}");
        }
        assert_eq!(Kind::from_name("matches_regex"), Some(Kind::Regex));
    }

    #[test]
    fn unknown_type_truncates_long_names() {
        let long = "x".repeat(1000);
        let problem = unknown_type("v", &long);
        assert!(problem.message.len() < 200, "{}", problem.message);
    }
}
