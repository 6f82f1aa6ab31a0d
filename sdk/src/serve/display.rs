//! The browser wall display: `GET /display` and its assets, built into the binary.
//!
//! A hall screen is a browser in kiosk mode. It cannot send an `Authorization` header
//! on an `EventSource`, so it is opened once as `/display?token=T`: a valid display
//! token is exchanged for an HttpOnly, SameSite=Strict cookie (a digest, not the
//! token) and the browser is sent (303) to the same URL without `token`, so the token
//! leaves the address bar and the history. The page then reads `/v1/lots` and
//! `/v1/notices?lots=inline` with that cookie. Without a valid cookie `/display` is a
//! short "not authorised" page that carries no lot data.
//!
//! The page (`display/index.html`), its style and its scripts are plain files under
//! `display/`; `display/display.js` documents the layouts and URL parameters.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::access::{Access, DISPLAY_COOKIE};

/// The page's markup; the same for every layout (the script reads the URL).
const PAGE: &str = include_str!("display/index.html");
/// What a browser without a valid cookie gets instead of the page.
const DENIED: &str = include_str!("display/denied.html");

/// Static assets under `/display/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "display.css",
        "text/css; charset=utf-8",
        include_str!("display/display.css"),
    ),
    (
        "display.js",
        "text/javascript; charset=utf-8",
        include_str!("display/display.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("display/view.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_str!("display/format.js"),
    ),
];

/// Longest query string `/display` reads; kiosk URLs are short.
const MAX_QUERY: usize = 2048;
/// Longest display token considered; anything longer is refused unread.
const MAX_TOKEN: usize = 512;
/// Cookies read from one request before giving up.
const MAX_COOKIES: usize = 64;
/// Lifetime of the display cookie: a kiosk browser restarts without losing it, and
/// removing the token from `--display-token` revokes it at once anyway.
const COOKIE_MAX_AGE_SECS: u64 = 90 * 24 * 3600;

/// Only the page's own files and endpoints; no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The routes of the wall display, with their state applied: `/display` and
/// `/display/{asset}`. Generic over the state of the router it is merged into.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(access: Arc<Access>) -> Router<S> {
    Router::new()
        .route("/display", get(page))
        .route("/display/{asset}", get(asset))
        .with_state(access)
}

/// Why a browser gets the "not authorised" page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denial {
    /// No token in the URL and no valid cookie.
    NoCredentials,
    /// A `token` parameter that is not a display token (or several of them).
    BadToken,
}

impl Denial {
    fn explanation(self) -> &'static str {
        match self {
            Denial::NoCredentials => {
                "This screen has not been authorised. Open this page once as \
                 /display?token=DISPLAY-TOKEN with one of the terminal server's display \
                 tokens; the browser then remembers the authorisation."
            }
            Denial::BadToken => {
                "The display token in this link is not valid on this terminal server. \
                 Ask for a current display token and open /display?token=DISPLAY-TOKEN again."
            }
        }
    }
}

async fn page(
    State(access): State<Arc<Access>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY {
        return (StatusCode::URI_TOO_LONG, "query string too long").into_response();
    }
    let (tokens, kept) = split_token(&query);
    match tokens.as_slice() {
        [] => {}
        [Some(token)] if token.len() <= MAX_TOKEN => {
            return match access.cookie_for(token) {
                Some(cookie) => {
                    tracing::info!("display authorised; cookie issued");
                    authorise(&kept, &cookie)
                }
                None => {
                    tracing::warn!("display token refused");
                    denied(Denial::BadToken)
                }
            };
        }
        _ => {
            tracing::warn!("display token refused (malformed, too long or repeated)");
            return denied(Denial::BadToken);
        }
    }
    if has_valid_cookie(&headers, &access) {
        html(StatusCode::OK, PAGE.to_owned())
    } else {
        denied(Denial::NoCredentials)
    }
}

/// The 303 to the same page without `token`, setting the display cookie.
fn authorise(kept: &[&str], cookie: &str) -> Response {
    let location = if kept.is_empty() {
        "/display".to_owned()
    } else {
        format!("/display?{}", kept.join("&"))
    };
    let set_cookie = format!(
        "{DISPLAY_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}"
    );
    let (Ok(location), Ok(set_cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&set_cookie),
    ) else {
        return (StatusCode::BAD_REQUEST, "malformed query string").into_response();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::SET_COOKIE, set_cookie);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn denied(why: Denial) -> Response {
    let mut response = html(
        StatusCode::UNAUTHORIZED,
        DENIED.replace("{{explanation}}", why.explanation()),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"lotsync display\""),
    );
    response
}

/// An HTML answer with the page's security headers; never cached, because what it
/// shows depends on the cookie.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Entity tags of the assets, computed once: a content hash, so a new build's assets
/// are fetched again while an unchanged one answers 304.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, body)| {
            let mut hasher = DefaultHasher::new();
            body.hash(&mut hasher);
            HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
                .expect("hex is a valid header value")
        })
        .collect()
});

/// Assets hold no lot data and need no cookie. `no-cache` with an ETag: a screen
/// revalidates on load (cheap, 304) and never runs a stale script after an upgrade.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (_, content_type, body) = ASSETS[index];
    let etag = ETAGS[index].clone();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, etag);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Whether a `lotsync_display` cookie of the request was issued for a current token.
fn has_valid_cookie(headers: &HeaderMap, access: &Access) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .take(MAX_COOKIES)
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == DISPLAY_COOKIE && access.allows_cookie(value))
}

/// Split a raw query string into the decoded values of its `token` parameters (`None`
/// for one that does not decode) and the other pairs, kept exactly as they came.
fn split_token(query: &str) -> (Vec<Option<String>>, Vec<&str>) {
    let mut tokens = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(key).as_deref() == Some("token") {
            tokens.push(decode_component(value));
        } else {
            kept.push(pair);
        }
    }
    (tokens, kept)
}

/// Decode one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a
/// byte); `None` for a broken escape or bytes that are not UTF-8.
fn decode_component(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // from_str_radix alone would take a sign ("%+1").
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
