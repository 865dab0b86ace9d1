use std::fmt;

/// A configuration error, naming the JSON field path it concerns
/// (`jwt.providers[1].issuer: must not be empty`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The JSON field path (`jwt.providers[1].issuer`); empty: the whole document.
    pub path: String,
    /// What is wrong there (never the value).
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
