//! What is wrong with a configuration, and where it came from.

use std::{fmt, path::PathBuf};

/// Where a configuration came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// Something else, described in words (for example "the module config in homeserver.yaml").
    Other(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "`{}`", path.display()),
            Self::Other(what) => f.write_str(what),
        }
    }
}

/// One thing wrong with a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `jwt.secret` or `server.listen`.
    pub key: String,
    /// What is wrong and, when possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file `{}` is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// The document parsed but its content is invalid.
    #[error("invalid configuration in {origin}: {}", join_problems(problems))]
    Invalid {
        origin: Origin,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The individual problems, for callers that want to show them one per line.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

pub(super) fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
