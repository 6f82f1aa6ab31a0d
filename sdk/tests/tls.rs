//! An `https://` master with a certificate from a private authority: the client trusts
//! it through `add_root_certificate`, sends its token on the notice stream and on
//! fetches, and mirrors the lot. Without the root it refuses the master.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// A TLS master answering the snapshot, one notice and its fetch. Reports the request
/// line and Authorization header of every request.
async fn https_master() -> (String, String, mpsc::UnboundedReceiver<(String, String)>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or_default()
                    .to_owned();
                let _ = seen_tx.send((line.clone(), auth));
                let (content_type, body) = if line.starts_with("GET /v1/notices") {
                    (
                        "text/event-stream",
                        format!("{}{}", hello(2), notice(2, "a")),
                    )
                } else if line.contains("ids=a") {
                    (
                        "application/json",
                        serde_json::to_string(&lots_body(2, 250)).unwrap(),
                    )
                } else {
                    (
                        "application/json",
                        serde_json::to_string(&lots_body(1, 100)).unwrap(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, pem, seen)
}

fn lots_body(seq: u64, price: i64) -> lotsync::protocol::LotsResponse {
    lotsync::protocol::LotsResponse {
        epoch: EPOCH.into(),
        seq,
        lots: vec![lot("a", seq, price)],
        missing: vec![],
    }
}

#[tokio::test]
async fn an_https_master_with_a_private_root_is_mirrored_and_sent_the_token() {
    let (url, pem, mut seen) = https_master().await;
    let client = lotsync::Client::builder(url)
        .token("tls-token")
        .add_root_certificate(pem.into_bytes())
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == 2))
        .await
    );
    let mut stream_auth = None;
    let mut fetch_auth = None;
    while let Ok((line, auth)) = seen.try_recv() {
        if line.starts_with("GET /v1/notices") {
            stream_auth = Some(auth);
        } else if line.contains("ids=a") {
            fetch_auth = Some(auth);
        }
    }
    assert_eq!(stream_auth.as_deref(), Some("Bearer tls-token"));
    assert_eq!(fetch_auth.as_deref(), Some("Bearer tls-token"));
    client.shutdown().await;
}

#[tokio::test]
async fn an_https_master_that_is_not_trusted_is_refused() {
    let (url, _pem, mut seen) = https_master().await;
    let client = lotsync::Client::builder(url)
        .token("tls-token")
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(!client.wait_live(Duration::from_millis(500)).await);
    assert!(client.mirror().is_empty());
    assert!(
        seen.try_recv().is_err(),
        "no request got past the handshake"
    );
    client.shutdown().await;
}
