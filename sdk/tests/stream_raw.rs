//! The SDK against a hand-written fake master over raw TCP, for what wiremock cannot
//! script: a stream that stays open but goes silent, and a wrong content type.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Serves the snapshot, and for each notice-stream request sends `stream_head` and
/// `stream_body`, then holds the connection open without a byte more. Reports each
/// stream connection on the channel.
async fn fake_master(
    stream_head: &'static str,
    stream_body: String,
) -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (connected, connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let connected = connected.clone();
            let body = stream_body.clone();
            tokio::spawn(serve(socket, stream_head, body, connected));
        }
    });
    (url, connections)
}

async fn serve(
    mut socket: TcpStream,
    stream_head: &str,
    body: String,
    connected: mpsc::UnboundedSender<()>,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    if request.starts_with("GET /v1/notices") {
        let _ = connected.send(());
        let _ = socket
            .write_all(format!("{stream_head}{body}").as_bytes())
            .await;
        // Silent from here on, connection held open.
        let _ = socket.read(&mut buf).await;
    } else {
        let snapshot = r#"{"epoch":"e1","seq":0,"lots":[],"missing":[]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{snapshot}",
            snapshot.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
    }
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
const JSON_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";

#[tokio::test]
async fn the_watchdog_reconnects_a_stream_that_went_silent() {
    let (url, mut connections) = fake_master(SSE_HEAD, hello(0)).await;
    let client = lotsync::Client::builder(url)
        .idle_timeout(Duration::from_millis(200))
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap();
    for _ in 0..3 {
        tokio::time::timeout(WAIT, connections.recv())
            .await
            .expect("a reconnect")
            .unwrap();
    }
    assert!(client.metrics().reconnects >= 2);
    client.shutdown().await;
}

#[tokio::test]
async fn a_stream_with_the_wrong_content_type_is_refused() {
    let (url, mut connections) = fake_master(JSON_HEAD, hello(0)).await;
    let client = lotsync::Client::builder(url)
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap();
    for _ in 0..2 {
        tokio::time::timeout(WAIT, connections.recv())
            .await
            .expect("a reconnect")
            .unwrap();
    }
    assert!(client.metrics().malformed_events >= 1);
    assert!(!client.state().borrow().is_live());
    client.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_for_prometheus() {
    let (url, _connections) = fake_master(SSE_HEAD, hello(0)).await;
    let client = lotsync::Client::builder(url).build().unwrap();
    let addr = client
        .export_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let metrics = get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(metrics.contains("lotsync_notices_total"), "{metrics}");
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    client.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the endpoint stops with the client"
    );
}
