//! A small async client for the memcached text protocol: `gets`, `add` and `cas`,
//! which is all the cache tier needs.
//!
//! Hand-written rather than a crate: the available clients are blocking or lack CAS,
//! and the tier needs per-request timeouts and "mark down, skip, retry later" behaviour
//! under its own control. One connection per server, reopened after any error.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Largest value accepted from a server (memcached's default item size limit).
const MAX_VALUE: usize = 1024 * 1024;

/// What went wrong talking to one memcached server.
#[derive(Debug, thiserror::Error)]
pub enum MemcachedError {
    /// Connecting, reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The server answered something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server is marked down after a recent failure.
    #[error("server marked down")]
    Down,
}

/// Outcome of a store command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreReply {
    Stored,
    /// `add` found the key, or `cas` found another CAS value.
    Conflict,
    /// `cas` found no item.
    NotFound,
}

/// One value from `gets`, with its CAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub key: String,
    pub value: Vec<u8>,
    pub cas: u64,
}

#[derive(Debug)]
pub(crate) struct Server {
    pub addr: String,
    timeout: Duration,
    /// How long a failed server is skipped.
    cooldown: Duration,
    conn: Mutex<Option<BufReader<TcpStream>>>,
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Server {
    pub fn new(addr: String, timeout: Duration, cooldown: Duration) -> Server {
        Server {
            addr,
            timeout,
            cooldown,
            conn: Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
        }
    }

    pub fn is_down(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    /// Run one request on the connection; on any failure drop the connection and mark
    /// the server down for the cooldown.
    async fn request<T>(
        &self,
        command: &[u8],
        read: impl AsyncFnOnce(&mut BufReader<TcpStream>) -> Result<T, MemcachedError>,
    ) -> Result<T, MemcachedError> {
        if self.is_down() {
            return Err(MemcachedError::Down);
        }
        let mut guard = self.conn.lock().await;
        let outcome = tokio::time::timeout(self.timeout, async {
            if guard.is_none() {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                *guard = Some(BufReader::new(stream));
            }
            let conn = guard
                .as_mut()
                .ok_or_else(|| MemcachedError::Protocol("no connection".into()))?;
            conn.get_mut().write_all(command).await?;
            read(conn).await
        })
        .await
        .unwrap_or(Err(MemcachedError::Timeout));
        if outcome.is_err() {
            *guard = None;
            *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + self.cooldown);
        }
        outcome
    }

    /// `gets k1 k2 ...`: the values found, with CAS tokens.
    pub async fn gets(&self, keys: &[String]) -> Result<Vec<Item>, MemcachedError> {
        let command = format!("gets {}\r\n", keys.join(" "));
        self.request(command.as_bytes(), async |conn| {
            let mut items = Vec::new();
            loop {
                let line = read_line(conn).await?;
                if line == "END" {
                    return Ok(items);
                }
                let mut parts = line.split(' ');
                let (Some("VALUE"), Some(key), Some(_flags), Some(len), Some(cas), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(MemcachedError::Protocol(format!(
                        "unexpected line {line:?}"
                    )));
                };
                let len: usize = len
                    .parse()
                    .map_err(|_| MemcachedError::Protocol("bad length".into()))?;
                if len > MAX_VALUE {
                    return Err(MemcachedError::Protocol("value too large".into()));
                }
                let cas: u64 = cas
                    .parse()
                    .map_err(|_| MemcachedError::Protocol("bad cas".into()))?;
                let mut value = vec![0; len + 2];
                conn.read_exact(&mut value).await?;
                if !value.ends_with(b"\r\n") {
                    return Err(MemcachedError::Protocol("value not terminated".into()));
                }
                value.truncate(len);
                items.push(Item {
                    key: key.to_owned(),
                    value,
                    cas,
                });
            }
        })
        .await
    }

    /// `add`: store only if the key is absent.
    pub async fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
    ) -> Result<StoreReply, MemcachedError> {
        let mut command = format!("add {key} 0 {ttl_secs} {}\r\n", value.len()).into_bytes();
        command.extend_from_slice(value);
        command.extend_from_slice(b"\r\n");
        self.request(&command, async |conn| store_reply(&read_line(conn).await?))
            .await
    }

    /// `cas`: store only if the item still has CAS token `cas`.
    pub async fn cas(
        &self,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
        cas: u64,
    ) -> Result<StoreReply, MemcachedError> {
        let mut command = format!("cas {key} 0 {ttl_secs} {} {cas}\r\n", value.len()).into_bytes();
        command.extend_from_slice(value);
        command.extend_from_slice(b"\r\n");
        self.request(&command, async |conn| store_reply(&read_line(conn).await?))
            .await
    }
}

fn store_reply(line: &str) -> Result<StoreReply, MemcachedError> {
    match line {
        "STORED" => Ok(StoreReply::Stored),
        "NOT_STORED" | "EXISTS" => Ok(StoreReply::Conflict),
        "NOT_FOUND" => Ok(StoreReply::NotFound),
        other => Err(MemcachedError::Protocol(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, MemcachedError> {
    let mut line = String::new();
    let read = (&mut *conn).take(4096).read_line(&mut line).await?;
    if read == 0 {
        return Err(MemcachedError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if !line.ends_with("\r\n") {
        return Err(MemcachedError::Protocol(
            "line too long or not terminated".into(),
        ));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_replies_map_to_outcomes() {
        assert_eq!(store_reply("STORED").unwrap(), StoreReply::Stored);
        assert_eq!(store_reply("EXISTS").unwrap(), StoreReply::Conflict);
        assert_eq!(store_reply("NOT_STORED").unwrap(), StoreReply::Conflict);
        assert_eq!(store_reply("NOT_FOUND").unwrap(), StoreReply::NotFound);
        assert!(store_reply("SERVER_ERROR out of memory").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_marked_down_and_skipped() {
        // A port nothing listens on: bind, take the address, close.
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let server = Server::new(addr, Duration::from_millis(200), Duration::from_secs(60));
        assert!(matches!(
            server.gets(&["k".into()]).await,
            Err(MemcachedError::Io(_))
        ));
        assert!(server.is_down());
        assert!(matches!(
            server.gets(&["k".into()]).await,
            Err(MemcachedError::Down)
        ));
    }
}
