//! Who may read from a terminal server: its display tokens, presented as a bearer
//! token or, for browsers (an `EventSource` cannot send headers), as a cookie derived
//! from one.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time. The cookie
//! holds a digest of the token under its own label, not the token: it works across a
//! restart of the terminal server (no session table) and never reveals the token.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use sha2::{Digest, Sha256};

/// Name of the cookie a browser display presents.
pub const DISPLAY_COOKIE: &str = "lotsync_display";

type Hash = [u8; 32];

fn digest(label: &str, secret: &str) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update([0]);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// Equal without an early exit, so the time taken says nothing about where they differ.
pub(crate) fn same(a: &Hash, b: &Hash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn any_matches(known: &[Hash], candidate: &Hash) -> bool {
    // Check every entry, not the first match: the time does not depend on which one.
    known
        .iter()
        .fold(false, |found, k| same(k, candidate) | found)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A secret kept only as a digest, compared in constant time.
///
/// ```
/// use lotsync::serve::Secret;
/// let admin = Secret::new("s3cret");
/// assert!(admin.matches("s3cret"));
/// assert!(!admin.matches("s3cre"));
/// assert!(!format!("{admin:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct Secret(Hash);

/// Constant time, like [`Secret::matches`].
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        same(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl Secret {
    /// Keep the digest of `secret`.
    pub fn new(secret: &str) -> Secret {
        Secret(digest("secret", secret))
    }

    /// Whether `candidate` is the secret, taking the same time wherever it differs.
    pub fn matches(&self, candidate: &str) -> bool {
        same(&self.0, &digest("secret", candidate))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The display tokens a terminal server accepts.
///
/// ```
/// use lotsync::serve::Access;
/// let access = Access::new(["wall-1".to_owned()]);
/// assert!(access.allows_token("wall-1"));
/// assert!(!access.allows_token("wall-2"));
/// let cookie = access.cookie_for("wall-1").unwrap();
/// assert!(!cookie.contains("wall-1"));
/// assert!(access.allows_cookie(&cookie));
/// ```
pub struct Access {
    tokens: Vec<Hash>,
    cookies: Vec<Hash>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Access {
    /// Accept these tokens.
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Access {
        let tokens: Vec<String> = tokens.into_iter().collect();
        Access {
            tokens: tokens.iter().map(|t| digest("token", t)).collect(),
            cookies: tokens.iter().map(|t| digest("cookie", t)).collect(),
        }
    }

    /// Whether `token` is one of the display tokens.
    pub fn allows_token(&self, token: &str) -> bool {
        any_matches(&self.tokens, &digest("token", token))
    }

    /// The cookie value standing for a valid `token`.
    pub fn cookie_for(&self, token: &str) -> Option<String> {
        self.allows_token(token)
            .then(|| hex(&digest("cookie", token)))
    }

    /// Whether a cookie value stands for one of the display tokens.
    pub fn allows_cookie(&self, value: &str) -> bool {
        unhex(value).is_some_and(|hash| any_matches(&self.cookies, &hash))
    }

    /// Whether a request carries a display token (bearer) or its cookie. `None` when it
    /// carries neither, `Some(false)` when what it carries is wrong.
    pub fn check(&self, headers: &HeaderMap) -> Option<bool> {
        if let Some(token) = bearer(headers) {
            return Some(self.allows_token(token));
        }
        let cookie = display_cookie(headers)?;
        Some(self.allows_cookie(cookie))
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

fn display_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == DISPLAY_COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie_are_checked() {
        let access = Access::new(["a".to_owned(), "b".to_owned()]);
        let mut headers = HeaderMap::new();
        assert_eq!(access.check(&headers), None);
        headers.insert(COOKIE, "x=1; lotsync_display=nothex".parse().unwrap());
        assert_eq!(access.check(&headers), Some(false));
        let cookie = access.cookie_for("b").unwrap();
        headers.insert(
            COOKIE,
            format!("x=1; lotsync_display={cookie}").parse().unwrap(),
        );
        assert_eq!(access.check(&headers), Some(true));
        headers.insert(AUTHORIZATION, "Bearer c".parse().unwrap());
        assert_eq!(access.check(&headers), Some(false), "a wrong bearer wins");
        headers.insert(AUTHORIZATION, "Bearer a".parse().unwrap());
        assert_eq!(access.check(&headers), Some(true));
        assert!(access.cookie_for("c").is_none());
        assert_ne!(access.cookie_for("a"), access.cookie_for("b"));
    }
}
