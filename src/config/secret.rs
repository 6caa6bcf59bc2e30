//! Wrappers that keep credentials out of logs: their `Debug` and `Display` never print the secret.

use std::fmt;

use url::Url;

/// The text printed in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// A credential (API key, secret key, management key, deployment key) that must never be logged.
///
/// `Debug` and `Display` print `[redacted]`; call [`Secret::expose`] where the value is really
/// needed (an `Authorization` header, a routing-map key).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself. Do not log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{REDACTED}\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A Redis connection URI; its user-info (password, or `user:password`) is redacted when printed.
///
/// The URI is kept exactly as configured so that the Redis client sees what the operator wrote.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUri {
    raw: String,
    url: Url,
}

impl RedisUri {
    /// URI schemes accepted for Redis.
    pub const SCHEMES: &'static [&'static str] = &["redis", "rediss", "redis+unix", "unix"];

    /// Parses and checks a Redis URI; the error message never contains the URI.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("invalid URI: {e}"))?;
        if !Self::SCHEMES.contains(&url.scheme()) {
            return Err(format!(
                "unsupported scheme {:?}; use one of {}",
                url.scheme(),
                Self::SCHEMES.join(", ")
            ));
        }
        Ok(RedisUri {
            raw: raw.to_string(),
            url,
        })
    }

    /// The URI as configured, password included. Do not log the result.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URI with its user-info replaced, safe to log.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RedisUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Renders a URL with any user name and password replaced by `[redacted]`.
///
/// A lone user name is redacted too: Redis clients read `redis://secret@host` as a password.
pub fn redact_url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut copy = url.clone();
    let rewritten = copy.set_username("").is_ok() && copy.set_password(Some("redacted")).is_ok();
    if rewritten {
        copy.to_string()
    } else {
        format!("{}://{REDACTED}", url.scheme())
    }
}
