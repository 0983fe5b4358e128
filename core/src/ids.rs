//! Typed identifiers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than the limit.
    #[error("must be at most {max} characters, got {len}")]
    TooLong {
        /// The limit.
        max: usize,
        /// The length seen.
        len: usize,
    },
    /// The id has a character outside `[a-z0-9_-]`.
    #[error("may only contain lowercase letters, digits, '-' and '_'; found {0:?}")]
    BadChar(char),
}

/// Checks the shape shared by every id: 1 to 64 of `[a-z0-9_-]`, starting with a letter or digit.
/// Ids end up in file paths, metric labels and URLs, so the alphabet is deliberately small.
fn check_id(s: &str) -> Result<(), IdError> {
    const MAX: usize = 64;
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX {
        return Err(IdError::TooLong { max: MAX, len: s.len() });
    }
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && (c == '-' || c == '_'));
        if !ok {
            return Err(IdError::BadChar(c));
        }
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A camera's id: stable, chosen by the operator, used in paths, metrics and URLs.
    CameraId
);
string_id!(
    /// A Panoptes node's id (one process of a scaled-out installation).
    NodeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_ids() {
        assert!(CameraId::new("front-door_2").is_ok());
        assert!(CameraId::new("7").is_ok());
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(CameraId::new(""), Err(IdError::Empty));
        assert_eq!(CameraId::new("Front"), Err(IdError::BadChar('F')));
        assert_eq!(CameraId::new("-x"), Err(IdError::BadChar('-')));
        assert_eq!(CameraId::new("a/b"), Err(IdError::BadChar('/')));
        assert!(matches!(CameraId::new("a".repeat(65)), Err(IdError::TooLong { .. })));
    }
}
