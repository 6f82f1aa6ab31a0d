//! A raw Server-Sent Events reader for tests: every event as it came, with its name,
//! id and JSON data, so assertions see exactly what a server wrote.

use std::time::Duration;

use serde_json::Value;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The `event:` field (`message` when absent).
    pub name: String,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` field, parsed as JSON.
    pub data: Value,
}

/// An open notice stream.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    /// Open `url` with `token`, optionally resuming after `last_event_id`. Fails unless
    /// the answer is 200 `text/event-stream`; the status is in the error.
    pub async fn open(
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<SseStream> {
        let mut request = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        anyhow::ensure!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        Ok(SseStream {
            response,
            buffer: String::new(),
        })
    }

    /// The next event, skipping comments; `None` when the stream ended or nothing came
    /// within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(Event { name, id, data });
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// The next event, which must be named `name` (panics otherwise, for tests).
    pub async fn expect(&mut self, name: &str) -> Event {
        let event = self
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the stream ended before a {name} event"));
        assert_eq!(
            event.name, name,
            "expected {name}, got {} {}",
            event.name, event.data
        );
        event
    }

    /// The next event that is not a heartbeat.
    pub async fn next_not_heartbeat(&mut self, timeout: Duration) -> Option<Event> {
        loop {
            let event = self.next(timeout).await?;
            if event.name != "heartbeat" {
                return Some(event);
            }
        }
    }
}
