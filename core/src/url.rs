//! URL redaction: credentials never leave the process.

use std::fmt;

use url::Url;

/// A URL with its user name and password removed, safe for logs, metrics and API responses.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// The redacted URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Returns `url` without user name and password (and without the query, which some cameras
/// use for tokens).
pub fn redact(url: &Url) -> RedactedUrl {
    let mut u = url.clone();
    // Both setters only fail for URLs that cannot have credentials, which then have none.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("redacted"));
    }
    RedactedUrl(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_and_query() -> Result<(), url::ParseError> {
        let u = Url::parse("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101?token=abc")?;
        let r = redact(&u);
        assert_eq!(r.as_str(), "rtsp://10.0.0.5:554/Streaming/101?redacted");
        assert!(!format!("{r} {r:?}").contains("hunter2"));
        Ok(())
    }
}
