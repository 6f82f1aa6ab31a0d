//! The HTTP transport under the notice stream: eventsource-client over reqwest.
//!
//! eventsource-client takes its transport from us. Using reqwest means one HTTP stack
//! and one TLS set-up (rustls, no OpenSSL) for notices, fetches and bids. The body is
//! wrapped in a guard that cuts the stream when a single event grows past a limit, so
//! a misbehaving master cannot make the client buffer without bound.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};

/// The stream was cut because one event exceeded the size limit.
#[derive(Debug, thiserror::Error)]
#[error("an event exceeded {limit} bytes")]
pub(crate) struct EventTooLarge {
    pub limit: usize,
}

/// A transport error carrying a plain message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

#[derive(Clone)]
pub(crate) struct ReqwestTransport {
    client: reqwest::Client,
    max_event_bytes: usize,
}

impl ReqwestTransport {
    pub fn new(client: reqwest::Client, max_event_bytes: usize) -> Self {
        ReqwestTransport {
            client,
            max_event_bytes,
        }
    }
}

impl HttpTransport for ReqwestTransport {
    fn request(&self, request: http::Request<Option<Bytes>>) -> ResponseFuture {
        let (parts, body) = request.into_parts();
        let mut builder = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let limit = self.max_event_bytes;
        // reqwest's futures are Send but not Sync, which the trait requires: run the
        // request as its own task and await the (Sync) join handle instead.
        let task = tokio::spawn(async move {
            let response = builder.send().await.map_err(TransportError::new)?;
            let mut converted = http::Response::builder().status(response.status());
            if let Some(headers) = converted.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response
                .bytes_stream()
                .map(|chunk| chunk.map_err(TransportError::new));
            let guarded: ByteStream = Box::pin(EventSizeGuard::new(body, limit));
            converted.body(guarded).map_err(TransportError::new)
        });
        Box::pin(async move {
            task.await
                .map_err(|e| TransportError::new(Message(format!("request task failed: {e}"))))?
        })
    }
}

/// Passes bytes through while counting the bytes since the last event boundary (a
/// blank line); yields an error once that count passes the limit.
struct EventSizeGuard<S> {
    // A std Mutex makes the wrapper Sync (the trait requires it) around a stream that
    // is only Send; it is never contended: only the polling task touches it.
    inner: Mutex<Pin<Box<S>>>,
    limit: usize,
    since_boundary: usize,
    last_byte_newline: bool,
    tripped: bool,
}

impl<S> EventSizeGuard<S> {
    fn new(inner: S, limit: usize) -> Self {
        EventSizeGuard {
            inner: Mutex::new(Box::pin(inner)),
            limit,
            since_boundary: 0,
            last_byte_newline: false,
            tripped: false,
        }
    }

    /// Update the count with a chunk; returns whether the limit was passed.
    fn scan(&mut self, chunk: &[u8]) -> bool {
        for &byte in chunk {
            match byte {
                b'\r' => continue,
                b'\n' if self.last_byte_newline => self.since_boundary = 0,
                _ => self.since_boundary += 1,
            }
            self.last_byte_newline = byte == b'\n';
            if self.since_boundary > self.limit {
                return true;
            }
        }
        false
    }
}

impl<S> Stream for EventSizeGuard<S>
where
    S: Stream<Item = Result<Bytes, TransportError>> + Send,
{
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.tripped {
            return Poll::Ready(None);
        }
        let polled = {
            let mut inner = this.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.as_mut().poll_next(cx)
        };
        match polled {
            Poll::Ready(Some(Ok(chunk))) if this.scan(&chunk) => {
                this.tripped = true;
                Poll::Ready(Some(Err(TransportError::new(EventTooLarge {
                    limit: this.limit,
                }))))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: Vec<&'static str>, limit: usize) -> (String, bool) {
        let source = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        let mut guard = EventSizeGuard::new(source, limit);
        let mut passed = String::new();
        let mut cut = false;
        while let Some(item) = guard.next().await {
            match item {
                Ok(bytes) => passed.push_str(std::str::from_utf8(&bytes).unwrap()),
                Err(e) => {
                    assert!(e.to_string().contains("exceeded"), "{e}");
                    cut = true;
                }
            }
        }
        (passed, cut)
    }

    #[tokio::test]
    async fn small_events_pass_whatever_the_total() {
        let chunks = vec!["data: 0123456789\n\n"; 100];
        let (passed, cut) = run(chunks, 32).await;
        assert!(!cut);
        assert_eq!(passed.len(), 1800);
    }

    #[tokio::test]
    async fn an_oversized_event_cuts_the_stream() {
        let (passed, cut) = run(
            vec![
                "data: ok\n\n",
                "data: ",
                "0123456789012345678901234567890123456789",
                "\n\n",
                "data: after\n\n",
            ],
            32,
        )
        .await;
        assert!(cut);
        assert_eq!(passed, "data: ok\n\ndata: ");
    }

    #[tokio::test]
    async fn crlf_boundaries_count() {
        let chunks = vec!["data: 0123456789\r\n\r\n"; 10];
        let (_, cut) = run(chunks, 20).await;
        assert!(!cut);
    }
}
