//! A hall for the wall display's tests, screenshots and benchmark: a terminal server
//! in this process, following a master, with one display token.

use std::time::Duration;

use lotsync::serve::TerminalServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The display token of every hall started here.
pub const DISPLAY_TOKEN: &str = "hall-wall-token";

/// A terminal server serving on `127.0.0.1`; stops on [`Hall::stop`] or when dropped.
pub struct Hall {
    url: String,
    server: TerminalServer,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Hall {
    /// Follow the master at `master_url` with its terminal `token`; serve on `listen`
    /// (`127.0.0.1:0` for a free port), heartbeats every `heartbeat`.
    pub async fn start(
        master_url: &str,
        token: &str,
        listen: &str,
        heartbeat: Duration,
    ) -> anyhow::Result<Hall> {
        let server = TerminalServer::builder(master_url)
            .token(token)
            .display_token(DISPLAY_TOKEN)
            .heartbeat(heartbeat)
            .client(|c| {
                c.reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
                    .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
            })
            .start()?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let serving = server.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Hall {
            url,
            server,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The page of `layout` (a query string such as `layout=board`), with the token
    /// that authorises the browser.
    pub fn display_url(&self, query: &str) -> String {
        format!("{}/display?token={DISPLAY_TOKEN}&{query}", self.url)
    }

    /// The terminal server (its upstream client's mirror, for waits).
    pub fn server(&self) -> &TerminalServer {
        &self.server
    }

    /// Stop serving and following.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Hall {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
