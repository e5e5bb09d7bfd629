//! The bearer token a client sends with every request (`keel serve
//! --auth-token-file`).

use std::fmt;
use std::path::Path;

use tonic::codegen::http::HeaderValue;

use crate::config::ConfigError;

/// A secret sent as `authorization: Bearer <token>` with every request. Never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token from its text (surrounding white space removed). It must be
    /// non-empty visible ASCII without spaces, as an HTTP header allows.
    pub fn new(text: &str) -> Result<Self, ConfigError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError::Token("the token is empty".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Token(
                "the token must be visible ASCII characters without spaces".into(),
            ));
        }
        Ok(BearerToken(token.to_owned()))
    }

    /// Reads a token from a file (its first line; trailing white space ignored).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Token(format!("cannot read {}: {e}", path.display())))?;
        Self::new(text.lines().next().unwrap_or_default())
            .map_err(|e| ConfigError::Token(format!("{}: {e}", path.display())))
    }

    /// The token's text, for comparing (in constant time) with what a request
    /// carries.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, `Bearer <token>`.
    pub fn header_value(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("a validated token is a valid header value");
        v.set_sensitive(true);
        v
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_checked_and_hidden() {
        let t = BearerToken::new(" s3cret-token\n").expect("valid");
        assert_eq!(t.secret(), "s3cret-token");
        assert_eq!(t.header_value(), "Bearer s3cret-token");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(BearerToken::new("  ").is_err());
        assert!(BearerToken::new("two words").is_err());
        assert!(BearerToken::new("naïve").is_err());
    }
}
