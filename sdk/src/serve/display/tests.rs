//! The display routes over real HTTP: the token-for-cookie exchange, the refusals, the
//! headers, the assets, and that no token reaches the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use super::*;

const TOKEN: &str = "wall-token-7f3a";

/// Serve the display routes on a free port; the server stops with the test's runtime.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app: Router = routes(Arc::new(Access::new([
        TOKEN.to_owned(),
        "other-token".to_owned(),
    ])));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_valid_token_becomes_a_cookie_and_leaves_the_url() {
    let url = serve().await;
    let answer = http()
        .get(format!("{url}/display?layout=lot&token={TOKEN}&lot=r1-02"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let h = answer.headers();
    assert_eq!(text(h, header::LOCATION), "/display?layout=lot&lot=r1-02");
    assert_eq!(text(h, header::CACHE_CONTROL), "no-store");
    let cookie = text(h, header::SET_COOKIE);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let value = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("lotsync_display="))
        .expect("a lotsync_display cookie");
    assert!(!value.is_empty());
    assert!(!value.contains(TOKEN), "the cookie must not be the token");

    // The cookie opens the page, with its security headers.
    let page = http()
        .get(format!("{url}/display?layout=lot&lot=r1-02"))
        .header(
            header::COOKIE,
            format!("theme=dark; lotsync_display={value}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    assert!(text(&h, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    assert!(!text(&h, header::CONTENT_SECURITY_POLICY).contains("unsafe"));
    assert_eq!(text(&h, header::CACHE_CONTROL), "no-store");
    assert_eq!(text(&h, header::REFERRER_POLICY), "no-referrer");
    assert_eq!(text(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    let body = page.text().await.unwrap();
    assert!(body.contains("/display/display.js"), "{body}");
}

#[tokio::test]
async fn the_token_alone_redirects_to_the_bare_page() {
    let url = serve().await;
    let answer = http()
        .get(format!("{url}/display?t%6Fken={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(text(answer.headers(), header::LOCATION), "/display");
}

#[tokio::test]
async fn without_valid_credentials_the_page_is_a_refusal_without_scripts() {
    let url = serve().await;
    let cases = [
        ("/display".to_owned(), None, "not been authorised"),
        (
            "/display?layout=board".to_owned(),
            Some("lotsync_display=forged"),
            "not been authorised",
        ),
        (format!("/display?token={TOKEN}x"), None, "not valid"),
        ("/display?token=".to_owned(), None, "not valid"),
        (
            format!("/display?token={TOKEN}&token={TOKEN}"),
            None,
            "not valid",
        ),
        ("/display?token=%zz".to_owned(), None, "not valid"),
        (
            format!("/display?token={}", "a".repeat(600)),
            None,
            "not valid",
        ),
    ];
    for (path, cookie, expected) in cases {
        let mut request = http().get(format!("{url}{path}"));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(answer.headers().get(header::SET_COOKIE).is_none(), "{path}");
        assert_eq!(text(answer.headers(), header::CACHE_CONTROL), "no-store");
        let body = answer.text().await.unwrap();
        assert!(body.contains(expected), "{path}: {body}");
        assert!(!body.contains("<script"), "{path}");
        assert!(
            !body.contains(TOKEN),
            "{path}: the refusal must not echo a token"
        );
    }
}

#[tokio::test]
async fn an_overlong_query_is_refused() {
    let url = serve().await;
    let answer = http()
        .get(format!("{url}/display?layout={}", "b".repeat(MAX_QUERY)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::URI_TOO_LONG);
}

#[tokio::test]
async fn assets_are_served_with_their_type_and_revalidated_by_etag() {
    let url = serve().await;
    for (name, content_type, body) in ASSETS {
        let answer = http()
            .get(format!("{url}/display/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{name}");
        let h = answer.headers().clone();
        assert_eq!(text(&h, header::CONTENT_TYPE), *content_type);
        assert_eq!(text(&h, header::CACHE_CONTROL), "no-cache");
        let etag = text(&h, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
        assert_eq!(answer.text().await.unwrap(), *body);

        let again = http()
            .get(format!("{url}/display/{name}"))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
    }
    for missing in ["nothing.js", "..%2Fdisplay.rs", "index.html"] {
        let answer = http()
            .get(format!("{url}/display/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_token_reaches_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    // The runtime is single-threaded, so the server's task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let url = serve().await;
    for token in [TOKEN, "wrong-secret-token"] {
        let answer = http()
            .get(format!("{url}/display?token={token}"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_redirection() || answer.status().is_client_error());
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("display authorised"), "{logs}");
    assert!(logs.contains("display token refused"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(!logs.contains("wrong-secret-token"), "{logs}");
}

#[test]
fn query_components_decode_strictly() {
    assert_eq!(decode_component("a+b%2Fc").as_deref(), Some("a b/c"));
    assert_eq!(decode_component("%C3%A9").as_deref(), Some("é"));
    for broken in ["%", "%4", "%zz", "%+1", "%FF"] {
        assert_eq!(decode_component(broken), None, "{broken}");
    }
}

#[test]
fn only_token_pairs_are_taken_out_of_the_query() {
    let (tokens, kept) = split_token("layout=rotate&every=8&token=a%2Bb&&x");
    assert_eq!(tokens, vec![Some("a+b".to_owned())]);
    assert_eq!(kept, vec!["layout=rotate", "every=8", "x"]);
}
