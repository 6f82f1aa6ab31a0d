//! Optional Prometheus endpoint: `GET /metrics` on a local port, serving the client's
//! metrics as text. A deliberately tiny HTTP/1.1 responder (one request per
//! connection) so the SDK does not pull in a web framework for one route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Metrics;

/// Longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// Serve `GET /metrics` on `listener` until `cancel` fires.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics))
                        .await;
                });
            }
            Err(error) => {
                debug!(%error, "metrics endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = if request_line.starts_with(b"GET /metrics ") {
        ("200 OK", crate::metrics::CONTENT_TYPE, metrics.encode())
    } else {
        (
            "404 Not Found",
            "text/plain",
            "only GET /metrics is served here\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Bind `addr` for the exporter; returns the listener and the address bound.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
