//! Shared harness for lotsync's end-to-end, fault and benchmark programs: start a
//! master in-process, create lots, connect clients, and compare mirrors with the
//! master's replica.
//!
//! # Layout
//! - this file: fixtures ([`lot_input`], [`start_master`], [`connect`],
//!   [`start_terminal_server`]) and the convergence check ([`converged`],
//!   [`wait_converged`]).
//! - [`sse`]: a raw Server-Sent Events reader; [`faults`]: the fault schedule.
//! - [`outage`]: bidders and a health watcher for database outages.
//! - [`progress`]: the benchmark programs' progress on stderr.
//! - [`nats`]: NATS servers and clusters with JetStream, started and killed by tests;
//!   [`stream`]: reading what the master published to JetStream.
//! - `tests/`: end-to-end suites that need the SDK and the master together.
//! - `src/bin/`: the benchmark programs, and the wall display's screenshots.
//! - [`browser`]: a headless Chromium over WebDriver; [`fake_terminal`]: a terminal
//!   server that plays whatever the wall display's tests ask of it; [`hall`]: a real
//!   terminal server in this process, for the display's tests, shots and benchmark.

pub mod browser;
pub mod fake_terminal;
pub mod hall;

pub mod faults;
pub mod nats;
pub mod outage;
pub mod progress;
pub mod sse;
pub mod stream;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use lotsync::protocol::{Lot, LotInput, LotStatus, Seq};
use mock_master::{Master, MasterHandle};

/// A valid, open lot input whose bidding ends in an hour.
pub fn lot_input(title: &str, starting_price: i64) -> LotInput {
    let now = Utc::now();
    LotInput {
        title: title.to_owned(),
        attributes: BTreeMap::new(),
        currency: "EUR".into(),
        starting_price,
        increment: 100.into(),
        reserve_price: None,
        status: Some(LotStatus::Open),
        starts_at: now - chrono::Duration::minutes(1),
        ends_at: now + chrono::Duration::hours(1),
        lane: None,
        run_order: None,
    }
}

/// Create `count` open lots `lot-0..` on the master.
pub async fn create_lots(handle: &MasterHandle, count: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("lot-{i}");
        handle
            .put_lot(&id, lot_input(&format!("Car {i}"), 10_000))
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// A master with short heartbeats and fault injection available.
pub async fn start_master(heartbeat: Duration) -> anyhow::Result<Master> {
    Ok(Master::builder()
        .in_memory()
        .heartbeat(heartbeat)
        .chaos(true)
        .bidder("alice", "alice-token")
        .bidder("bob", "bob-token")
        .start()
        .await?)
}

/// A client of `master` with short retry delays.
pub fn connect(master: &Master) -> anyhow::Result<lotsync::Client> {
    Ok(lotsync::Client::builder(master.url())
        .token(master.terminal_token())
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
        .build()?)
}

/// Run the test `test` of the current test binary as a child process with `env`, and
/// return it with the URL it prints on a `listening on URL` line. The child is a test
/// function that does nothing unless its environment is set (so it can be killed with
/// SIGKILL, which an in-process server cannot). Its stdout keeps being drained.
pub fn spawn_test_child(test: &str, env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the child printed its address")
            .unwrap();
        // libtest may print "test NAME ... " on the same line first.
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// In a child started by [`spawn_test_child`]: bind `listen` and tell the parent where
/// it listens (the `listening on URL` line it waits for). Panics if the address cannot
/// be bound: the child then ends and the parent's wait fails with it.
pub async fn child_listener(listen: &str) -> tokio::net::TcpListener {
    use std::io::Write;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {listen}: {e}"));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "listening on http://{}",
        listener.local_addr().expect("a bound address")
    )
    .and_then(|()| out.flush())
    .expect("the parent reads stdout");
    listener
}

/// A terminal server running in-process on a free port of 127.0.0.1.
pub struct RunningTerminalServer {
    /// The server (its client, position).
    pub server: lotsync::serve::TerminalServer,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The display token its terminals present.
    pub token: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio_util::sync::CancellationToken,
}

impl RunningTerminalServer {
    /// A client of this terminal server with short retry delays.
    pub fn connect(&self) -> anyhow::Result<lotsync::Client> {
        self.connect_with(|b| b)
    }

    /// A client of this terminal server, configured further by `configure`.
    pub fn connect_with(
        &self,
        configure: impl FnOnce(lotsync::ClientBuilder) -> lotsync::ClientBuilder,
    ) -> anyhow::Result<lotsync::Client> {
        let builder = lotsync::Client::builder(&self.url)
            .token(&self.token)
            .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
            .retry_delay(Duration::from_millis(10), Duration::from_millis(200));
        Ok(configure(builder).build()?)
    }

    /// Stop serving and stop following the upstream.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Start a terminal server following `upstream` (a master or another terminal server)
/// with `token`, on a free port, with short heartbeats and upstream retry delays;
/// `configure` adjusts the builder.
pub async fn start_terminal_server(
    upstream: &str,
    token: &str,
    configure: impl FnOnce(
        lotsync::serve::TerminalServerBuilder,
    ) -> lotsync::serve::TerminalServerBuilder,
) -> anyhow::Result<RunningTerminalServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    start_terminal_server_on(listener, upstream, token, configure)
}

/// [`start_terminal_server`] on a listener the caller bound (to restart on a port).
pub fn start_terminal_server_on(
    listener: tokio::net::TcpListener,
    upstream: &str,
    token: &str,
    configure: impl FnOnce(
        lotsync::serve::TerminalServerBuilder,
    ) -> lotsync::serve::TerminalServerBuilder,
) -> anyhow::Result<RunningTerminalServer> {
    let display_token = "display-token".to_owned();
    let builder = lotsync::serve::TerminalServer::builder(upstream)
        .token(token)
        .client(|c| {
            c.reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
                .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
        })
        .display_token(&display_token)
        .heartbeat(Duration::from_millis(200));
    let server = configure(builder).start()?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move { server.serve(listener, stop.cancelled_owned()).await })
    };
    Ok(RunningTerminalServer {
        server,
        url,
        token: display_token,
        task,
        stop,
    })
}

/// Lots whose version differs between `mirror` and `replica` (missing on either side
/// counts), as `(id, mirror version, replica version)`.
pub fn differences(
    mirror: &[std::sync::Arc<Lot>],
    replica: &[Lot],
) -> Vec<(String, Option<Seq>, Option<Seq>)> {
    let mut versions: BTreeMap<&str, (Option<Seq>, Option<Seq>)> = BTreeMap::new();
    for lot in mirror {
        versions.entry(&lot.id).or_default().0 = Some(lot.seq);
    }
    for lot in replica {
        versions.entry(&lot.id).or_default().1 = Some(lot.seq);
    }
    versions
        .into_iter()
        .filter(|(_, (m, r))| m != r)
        .map(|(id, (m, r))| (id.to_owned(), m, r))
        .collect()
}

/// Whether the client's mirror equals the replica lot for lot, version for version,
/// and content for content.
pub fn converged(client: &lotsync::Client, replica: &[Lot]) -> bool {
    let mirror = client.mirror().lots();
    differences(&mirror, replica).is_empty()
        && mirror.iter().zip(replica).all(|(m, r)| m.as_ref() == r)
}

/// Wait until every client has converged on the replica, or `timeout` passes.
/// Returns the differences of the first client that did not converge.
pub async fn wait_converged(
    handle: &MasterHandle,
    clients: &[lotsync::Client],
    timeout: Duration,
) -> anyhow::Result<Result<(), Vec<(String, Option<Seq>, Option<Seq>)>>> {
    let head = handle.head();
    if !handle.wait_replicated(head, timeout).await {
        anyhow::bail!("the replica did not reach the head {head} within {timeout:?}");
    }
    let replica = handle.replica_lots().await?;
    // Subscribed before the first check, so no change slips between check and wait.
    let mut displays: Vec<lotsync::Subscription> = clients.iter().map(|c| c.subscribe()).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if clients.iter().all(|c| converged(c, &replica)) {
            return Ok(Ok(()));
        }
        // Check again when any client's mirror (or connection state) changes.
        // (`all` above is true for no clients, so there is at least one display here.)
        let next = futures::future::select_all(displays.iter_mut().map(|d| Box::pin(d.recv())));
        let woke = tokio::time::timeout_at(deadline, next).await;
        // A timeout, or a client that shut down: nothing more will change.
        if !matches!(woke, Ok((Some(_), _, _))) {
            let laggard = clients.iter().find(|c| !converged(c, &replica));
            return Ok(Err(laggard
                .map(|c| differences(&c.mirror().lots(), &replica))
                .unwrap_or_default()));
        }
    }
}
