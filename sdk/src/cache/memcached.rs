//! A small async client for the memcached text protocol: `gets`, `add` and `cas`,
//! which is all the cache tier needs.
//!
//! Kept rather than replaced by a crate: the maintained async clients either lack
//! `gets`/`cas` (which the tier's "only ever replace by a newer version" rests on) or
//! hold one multiplexed connection with no per-request timeout, and the tier needs
//! per-request timeouts and "mark down, skip, retry later" under its own control. The
//! protocol subset is three commands.
//!
//! Cancel-safe by construction: a request takes a connection out of the server's small
//! pool and owns it until the reply is read in full; only then does it go back. A
//! request that is cancelled (its future dropped) or times out drops its connection
//! with it, so an unread reply can never be read by the next request. Every reply is
//! checked against the request (`gets` only returns keys it asked for, each once), and
//! any surprise discards the connection. Up to [`POOL_SIZE`] requests per server run
//! at once, each on its own connection, so one slow request does not hold up others.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Connections per server: requests in flight at once to one server.
pub(crate) const POOL_SIZE: usize = 4;

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
    /// Idle connections, each with nothing left unread.
    idle: std::sync::Mutex<Vec<BufReader<TcpStream>>>,
    /// One permit per connection in use or idle: bounds the pool.
    permits: Semaphore,
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Server {
    pub fn new(addr: String, timeout: Duration, cooldown: Duration) -> Server {
        Server {
            addr,
            timeout,
            cooldown,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
            down_until: std::sync::Mutex::new(None),
        }
    }

    pub fn is_down(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<BufReader<TcpStream>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run one request on a connection of the pool (a new one when none is idle); on
    /// any failure drop the connection and mark the server down for the cooldown.
    /// The connection goes back to the pool only after a whole, expected reply.
    async fn request<T>(
        &self,
        command: &[u8],
        read: impl AsyncFnOnce(&mut BufReader<TcpStream>) -> Result<T, MemcachedError>,
    ) -> Result<T, MemcachedError> {
        if self.is_down() {
            return Err(MemcachedError::Down);
        }
        let outcome = tokio::time::timeout(self.timeout, async {
            // The semaphore is never closed.
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| MemcachedError::Down)?;
            let pooled = self.idle().pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => {
                    let stream = TcpStream::connect(&self.addr).await?;
                    stream.set_nodelay(true)?;
                    BufReader::new(stream)
                }
            };
            conn.get_mut().write_all(command).await?;
            let reply = read(&mut conn).await?;
            if !conn.buffer().is_empty() {
                // More than the reply arrived: the connection is out of step.
                return Err(MemcachedError::Protocol(
                    "unexpected bytes after reply".into(),
                ));
            }
            self.idle().push(conn);
            Ok(reply)
        })
        .await
        .unwrap_or(Err(MemcachedError::Timeout));
        if outcome.is_err() {
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
                // Only keys asked for, each once: anything else is another
                // request's reply or a confused server.
                if !keys.iter().any(|k| k == key) || items.iter().any(|i: &Item| i.key == key) {
                    return Err(MemcachedError::Protocol(format!(
                        "reply for a key not asked for: {key:?}"
                    )));
                }
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

    /// A fake memcached that answers each `gets KEY` only when told to, so a test can
    /// cancel a request after its command was sent and before its reply arrived.
    async fn held_server() -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        tokio::sync::mpsc::UnboundedSender<()>,
    ) {
        use tokio::sync::mpsc::unbounded_channel;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (asked_tx, asked_rx) = unbounded_channel();
        let (release_tx, release_rx) = unbounded_channel::<()>();
        let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(release_rx));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (asked_tx, release_rx) = (asked_tx.clone(), release_rx.clone());
                tokio::spawn(async move {
                    let mut conn = BufReader::new(stream);
                    while let Ok(line) = read_line(&mut conn).await {
                        let key = line.strip_prefix("gets ").unwrap().to_owned();
                        let _ = asked_tx.send(key.clone());
                        release_rx.lock().await.recv().await;
                        let reply = format!("VALUE {key} 0 {} 1\r\n{key}\r\nEND\r\n", key.len());
                        if conn.get_mut().write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, asked_rx, release_tx)
    }

    #[tokio::test]
    async fn a_cancelled_request_never_hands_its_reply_to_the_next() {
        let (addr, mut asked, release) = held_server().await;
        let server = Server::new(addr, Duration::from_secs(30), Duration::ZERO);
        // Sent, then cancelled before the reply: its future is dropped.
        {
            let keys = ["first".to_owned()];
            let first = server.gets(&keys);
            tokio::pin!(first);
            tokio::select! {
                _ = &mut first => panic!("answered before release"),
                key = asked.recv() => assert_eq!(key.as_deref(), Some("first")),
            }
        }
        // The reply to the cancelled request is now on its way.
        release.send(()).unwrap();
        let second = tokio::spawn(async move { server.gets(&["second".into()]).await });
        assert_eq!(asked.recv().await.as_deref(), Some("second"));
        release.send(()).unwrap();
        let items = second.await.unwrap().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, "second");
        assert_eq!(items[0].value, b"second");
    }

    #[tokio::test]
    async fn a_reply_for_another_key_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = BufReader::new(stream);
            let _ = read_line(&mut conn).await;
            let _ = conn
                .get_mut()
                .write_all(b"VALUE other 0 1 1\r\nx\r\nEND\r\n")
                .await;
        });
        let server = Server::new(addr, Duration::from_secs(30), Duration::ZERO);
        assert!(matches!(
            server.gets(&["mine".into()]).await,
            Err(MemcachedError::Protocol(_))
        ));
    }

    /// Under load on a real memcached (`LOTSYNC_MEMCACHED`, started by
    /// `scripts/test.sh`), requests cancelled at random points never give any other
    /// request a reply that is not its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_cancellations_under_load_never_cross_replies() {
        use rand::{Rng, SeedableRng};
        let addr = std::env::var("LOTSYNC_MEMCACHED")
            .unwrap_or_else(|_| "127.0.0.1:21211".into())
            .split(',')
            .next()
            .unwrap()
            .to_owned();
        let server =
            std::sync::Arc::new(Server::new(addr, Duration::from_secs(10), Duration::ZERO));
        let prefix = format!("lotsync:test:cancel:{}", rand::rng().random::<u64>());
        let keys: Vec<String> = (0..64).map(|i| format!("{prefix}:{i}")).collect();
        for key in &keys {
            // Each value names its key, so a crossed reply shows.
            let reply = server.add(key, key.as_bytes(), 60).await;
            assert!(reply.is_ok(), "memcached at LOTSYNC_MEMCACHED: {reply:?}");
        }
        let mut tasks = Vec::new();
        for task in 0..16 {
            let (server, keys) = (server.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64);
                let (mut answered, mut cancelled) = (0u32, 0u32);
                for round in 0..200 {
                    let asked: Vec<String> = (0..rng.random_range(1..4))
                        .map(|_| keys[rng.random_range(0..keys.len())].clone())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    // Every third request is cancelled after a random few microseconds:
                    // before, during or after its write.
                    let cancel_after = Duration::from_micros(rng.random_range(0..300));
                    let request = server.gets(&asked);
                    let outcome = if (task + round) % 3 == 0 {
                        match tokio::time::timeout(cancel_after, request).await {
                            Ok(outcome) => outcome,
                            Err(_) => {
                                cancelled += 1;
                                continue;
                            }
                        }
                    } else {
                        request.await
                    };
                    let items = outcome.expect("memcached answered");
                    assert_eq!(items.len(), asked.len(), "asked {asked:?}, got {items:?}");
                    for item in &items {
                        assert!(asked.contains(&item.key), "asked {asked:?}, got {item:?}");
                        assert_eq!(item.value, item.key.as_bytes(), "crossed reply");
                    }
                    answered += 1;
                }
                (answered, cancelled)
            }));
        }
        let (mut answered, mut cancelled) = (0, 0);
        for task in tasks {
            let (a, c) = task.await.unwrap();
            answered += a;
            cancelled += c;
        }
        assert!(
            answered > 0 && cancelled > 0,
            "{answered} answered, {cancelled} cancelled"
        );
        assert!(server.idle().len() <= POOL_SIZE);
    }
}
