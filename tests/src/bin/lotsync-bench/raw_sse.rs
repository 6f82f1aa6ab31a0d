//! A minimal Server-Sent Events reader on a plain TCP socket: one HTTP/1.1 GET, the
//! body (chunked or not) cut into events. Light enough to hold thousands of streams in
//! one process, and it owns its socket, so it can acknowledge every read at once
//! (TCP_QUICKACK, which Linux clears again after a while) like a tuned reader would.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One event: its name (`message` when absent) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field.
    pub name: String,
    /// The `data:` field(s).
    pub data: String,
}

/// Where a chunked body is.
#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// This many data bytes left in the chunk.
    Data(usize),
    /// This many bytes of the CRLF after a chunk's data left to skip.
    End(usize),
    /// The last chunk was read.
    Done,
}

/// An open event stream.
pub struct RawSse {
    stream: TcpStream,
    quickack: bool,
    /// `None` when the body is not chunked (it ends with the connection).
    chunk: Option<Chunk>,
    /// Decoded body not yet cut into events.
    body: Vec<u8>,
}

impl RawSse {
    /// GET `url` (`http://host:port/path?query`) as an event stream, with a bearer
    /// `token` if given; fails unless the answer is 200. With `quickack`, every read
    /// is acknowledged at once instead of after the delayed-ACK timer.
    pub async fn open(url: &str, token: Option<&str>, quickack: bool) -> anyhow::Result<RawSse> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("not an http URL: {url}"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut stream = TcpStream::connect(host)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{auth}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("{url}: connection closed before the response head");
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > MAX_HEAD {
                bail!("{url}: response head too long");
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let status = text.split_ascii_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            bail!("{url}: status {status}");
        }
        let chunked = text
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        let mut sse = RawSse {
            stream,
            quickack,
            chunk: chunked.then(|| Chunk::Size(Vec::new())),
            body: Vec::new(),
        };
        sse.quick_ack();
        sse.feed(&head[end..]);
        Ok(sse)
    }

    /// Wait for the next read and append the events it completed to `events`.
    /// Returns `false` when the stream ended.
    pub async fn read(&mut self, events: &mut Vec<Event>) -> anyhow::Result<bool> {
        loop {
            if self.cut(events) {
                return Ok(true);
            }
            if matches!(self.chunk, Some(Chunk::Done)) {
                return Ok(false);
            }
            let mut buf = [0u8; 8192];
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            self.quick_ack();
            self.feed(&buf[..n]);
        }
    }

    fn quick_ack(&self) {
        #[cfg(target_os = "linux")]
        if self.quickack {
            let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
        }
    }

    /// Decode `input` (chunked or plain) into `body`.
    fn feed(&mut self, mut input: &[u8]) {
        let Some(chunk) = self.chunk.as_mut() else {
            self.body.extend_from_slice(input);
            return;
        };
        while !input.is_empty() {
            match chunk {
                Chunk::Size(line) => {
                    let Some(i) = input.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(input);
                        return;
                    };
                    line.extend_from_slice(&input[..i]);
                    input = &input[i + 1..];
                    let text = String::from_utf8_lossy(line);
                    let hex = text.trim().split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).unwrap_or(0);
                    *chunk = if size == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let n = (*left).min(input.len());
                    self.body.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        *chunk = Chunk::End(2);
                    }
                }
                Chunk::End(left) => {
                    let n = (*left).min(input.len());
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        *chunk = Chunk::Size(Vec::new());
                    }
                }
                Chunk::Done => return,
            }
        }
    }

    /// Move every complete event of `body` to `events`; returns whether any was.
    fn cut(&mut self, events: &mut Vec<Event>) -> bool {
        let before = events.len();
        let mut start = 0;
        while let Some(i) = self.body[start..].windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8_lossy(&self.body[start..start + i]);
            start += i + 2;
            let (mut name, mut data) = (String::from("message"), None::<String>);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    match data.as_mut() {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(v);
                        }
                        None => data = Some(v.to_owned()),
                    }
                }
            }
            if let Some(data) = data {
                events.push(Event { name, data });
            }
        }
        self.body.drain(..start);
        events.len() > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(head: &str) -> (RawSse, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sub", listener.local_addr().unwrap());
        let head = head.to_owned();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(head.as_bytes()).await.unwrap();
            socket
        });
        let sse = RawSse::open(&url, Some("t"), true).await.unwrap();
        (sse, server.await.unwrap())
    }

    #[tokio::test]
    async fn chunked_events_split_anywhere_are_put_together() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let (mut sse, mut server) = pair(head).await;
        let body = ": hi\n\nevent: notice\nid: 7\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n";
        // One chunk split in the middle of its size line, data and CRLF.
        let wire = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        let (a, b) = wire.split_at(17);
        let mut events = Vec::new();
        // Written in pieces; the comment alone completes no event.
        for piece in [&a.as_bytes()[..1], &a.as_bytes()[1..], b.as_bytes()] {
            server.write_all(piece).await.unwrap();
            server.flush().await.unwrap();
        }
        while events.len() < 2 {
            assert!(sse.read(&mut events).await.unwrap());
        }
        assert_eq!(
            events,
            vec![
                Event {
                    name: "notice".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    name: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
        assert!(!sse.read(&mut events).await.unwrap());
    }

    #[tokio::test]
    async fn a_refusal_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            let _ = socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let error = RawSse::open(&url, None, false).await.err().unwrap();
        assert!(error.to_string().contains("503"), "{error}");
    }
}
