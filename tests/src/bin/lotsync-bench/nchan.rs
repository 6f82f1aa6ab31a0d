//! The peer design: nchan (nginx's push module) carrying the data. A private nginx with
//! a generated configuration in a temporary directory, on a free port of 127.0.0.1,
//! started and stopped by the benchmark; and the publisher that, after each commit,
//! posts the committed lot's JSON (the body a fetch returns) to its channel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use lotsync::protocol::{Bid, Lot, RECENT_BIDS};
use tokio::process::{Child, Command};

use crate::procfs::Probe;

/// Where Debian's packages put nginx and the module.
const NGINX: &str = "/usr/sbin/nginx";
const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// Why nchan cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    let missing: Vec<&str> = [NGINX, MODULE]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "nchan rows skipped: {} not installed (Debian: apt-get install nginx-light libnginx-mod-nchan)",
            missing.join(" and ")
        )
    })
}

/// A running private nginx with nchan.
pub struct Nchan {
    child: Child,
    pid: u32,
    port: u16,
    dir: tempfile::TempDir,
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    // Debian's defaults where they matter (one worker per core, no access log); the
    // channel keeps a short history so a subscriber that reconnects can resume.
    format!(
        "load_module {MODULE};
daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_buffer_size 64k;
    client_max_body_size 64k;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /pub {{
            nchan_publisher;
            nchan_channel_id lots;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 60s;
        }}
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id lots;
        }}
    }}
}}
"
    )
}

impl Nchan {
    /// Start nginx in a temporary directory under `scratch`; returns once it accepts
    /// connections.
    pub async fn start(scratch: &Path) -> anyhow::Result<Nchan> {
        let dir = tempfile::Builder::new()
            .prefix("bench-nchan-")
            .tempdir_in(scratch)?;
        // A free port: bind, note it, let it go for nginx.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port))?;
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let pid = child.id().context("nginx's pid")?;
        let mut nchan = Nchan {
            child,
            pid,
            port,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_millis(5);
        // nginx says nothing when it is ready: it is once its port accepts.
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = nchan.child.try_wait() {
                let log =
                    std::fs::read_to_string(nchan.dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {}", log.trim());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nginx did not accept connections on port {port} within 10 s");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(nchan)
    }

    /// The subscribers' EventSource URL.
    pub fn subscribe_url(&self) -> String {
        format!("http://127.0.0.1:{}/sub", self.port)
    }

    /// The publishers' URL.
    pub fn publish_url(&self) -> String {
        format!("http://127.0.0.1:{}/pub", self.port)
    }

    /// Where its CPU time is read: the master and its workers.
    pub fn cpu(&self) -> Probe {
        Probe::Family(self.pid)
    }

    fn terminate(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Stop nginx (SIGTERM to its master, which stops the workers) and wait for it.
    pub async fn stop(mut self) {
        self.terminate();
        if tokio::time::timeout(Duration::from_secs(8), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("nginx did not stop in time; killing it");
            let _ = self.child.kill().await;
        }
        // What nginx complained about (a stall in nchan would show here).
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let worries: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["[warn]", "[error]", "[crit]", "[alert]", "[emerg]"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .take(3)
            .collect();
        if !worries.is_empty() {
            tracing::warn!(log = %worries.join(" | "), "nginx's error log");
        }
    }
}

impl Drop for Nchan {
    fn drop(&mut self) {
        // Workers outlive a killed master: always end it with SIGTERM (a no-op when
        // `stop` already did).
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Publishes each committed lot to nchan: the application a push-server design needs.
pub struct Publisher {
    http: reqwest::Client,
    url: String,
    /// The lots as committed, so each publish carries the whole new version.
    lots: Mutex<HashMap<String, Lot>>,
    failed: AtomicU64,
    /// Time of each POST until answered, µs.
    times: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Publisher {
    /// Publish to `url`, starting from `lots` as they are before the load.
    pub fn new(url: String, lots: Vec<Lot>) -> anyhow::Result<Publisher> {
        Ok(Publisher {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(10))
                .build()?,
            url,
            lots: Mutex::new(lots.into_iter().map(|l| (l.id.clone(), l)).collect()),
            failed: AtomicU64::new(0),
            times: Mutex::new(crate::load::histogram()),
        })
    }

    /// Apply `bid` to its lot and publish the lot; a bid older than the version
    /// already published changes nothing (the newer version covers it).
    pub async fn publish(&self, bid: &Bid) {
        let body = {
            let mut lots = self.lots.lock().unwrap_or_else(|e| e.into_inner());
            let Some(lot) = lots.get_mut(&bid.lot_id) else {
                return;
            };
            if bid.seq <= lot.seq {
                return;
            }
            lot.current_price = bid.amount;
            lot.bid_count += 1;
            lot.leading_bidder = Some(bid.bidder.clone());
            lot.seq = bid.seq;
            lot.updated_at = bid.at;
            lot.recent_bids.insert(0, bid.clone());
            lot.recent_bids.truncate(RECENT_BIDS);
            serde_json::to_string(lot).unwrap_or_default()
        };
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let took = started.elapsed().as_micros() as u64;
        let _ = self
            .times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(took);
        if !sent.is_ok_and(|r| r.status().is_success()) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Percentiles of the publish times.
    pub fn times(&self) -> crate::stats::Percentiles {
        crate::stats::Percentiles::of(&self.times.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes that failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}
