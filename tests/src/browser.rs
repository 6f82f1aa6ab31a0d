//! A headless Chromium driven over WebDriver, for the wall display's browser tests,
//! screenshots and benchmark.
//!
//! WebDriver is JSON over HTTP and the display needs six of its commands, so this
//! speaks it with the workspace's reqwest instead of pulling in a WebDriver crate.
//! `chromedriver` is started on a free port with its own process group and a fresh
//! profile directory; [`Browser::close`] ends the session, and dropping a browser
//! kills the group, so no Chromium outlives its test.
//!
//! Binaries: `LOTSYNC_CHROMEDRIVER` and `LOTSYNC_CHROMIUM`, else Debian's
//! `chromium-driver` and `chromium` packages. When they cannot be started,
//! [`Browser::start`] fails: a browser test never passes unrun.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long chromedriver may take to say it listens.
const DRIVER_START: Duration = Duration::from_secs(30);
/// Longest single WebDriver command (page loads, screenshots) other than waits.
const COMMAND: Duration = Duration::from_secs(60);

/// Flags for a closed network and a container: without them Chromium waits on lookups
/// and background services.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    // Pages in several browsers at once (the benchmark): none is throttled as hidden.
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
];

/// One Chromium with one WebDriver session.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    /// The profile lives as long as the browser.
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

fn find(env: &str, candidates: &[&str]) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    for candidate in candidates {
        let p = Path::new(candidate);
        if p.is_absolute() && p.is_file() {
            return Ok(p.to_path_buf());
        }
        for dir in std::env::split_paths(&path_dirs) {
            if dir.join(candidate).is_file() {
                return Ok(dir.join(candidate));
            }
        }
    }
    bail!(
        "none of {candidates:?} found (install Debian's chromium and chromium-driver, \
         or set {env})"
    )
}

impl Browser {
    /// Start chromedriver and a headless Chromium whose page area is `width`×`height`.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let driver_bin = find("LOTSYNC_CHROMEDRIVER", &["chromedriver"])?;
        // Debian's /usr/bin/chromium is a wrapper script; the real binary starts faster.
        let chromium = find(
            "LOTSYNC_CHROMIUM",
            &["/usr/lib/chromium/chromium", "chromium", "chromium-browser"],
        )?;
        let mut driver = Command::new(&driver_bin)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", driver_bin.display()))?;
        let stdout = driver.stdout.take().context("chromedriver stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(DRIVER_START, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return Ok::<u16, anyhow::Error>(rest.trim_end_matches('.').parse()?);
                }
            }
            bail!("chromedriver exited before it listened")
        })
        .await
        .context("chromedriver did not start in time")??;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let http = reqwest::Client::builder().timeout(COMMAND).build()?;
        let root = format!("http://127.0.0.1:{port}");
        let created: Value = command(http.post(format!("{root}/session")).json(&json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
                "goog:loggingPrefs": {"browser": "ALL"},
                "timeouts": {"script": 600_000, "pageLoad": 30_000},
            }}
        })))
        .await
        .context("Chromium did not start")?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {created}"))?;
        let mut browser = Browser {
            http,
            session: format!("{root}/session/{id}"),
            driver,
            _profile: profile,
        };
        browser.viewport(width, height).await?;
        Ok(browser)
    }

    /// Make the page area exactly `width`×`height` CSS pixels at scale 1 (device
    /// metrics emulation: the headless window itself cannot outgrow its screen).
    pub async fn viewport(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        let inner = self
            .execute("return [window.innerWidth, window.innerHeight];", json!([]))
            .await?;
        if inner != json!([width, height]) {
            bail!("asked for a {width}x{height} viewport, got {inner}");
        }
        Ok(())
    }

    /// Send a Chrome DevTools Protocol command to the page.
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.post("goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Load `url` and wait for the page's load event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("url", json!({ "url": url })).await.map(drop)
    }

    /// The URL shown in the address bar.
    pub async fn url(&self) -> anyhow::Result<String> {
        let v = command(self.http.get(format!("{}/url", self.session))).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Run `script` (a function body) in the page with `args` and return its result.
    pub async fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Run `script` (a function body that calls `arguments[arguments.length - 1]`
    /// with its result) in the page and return that result.
    pub async fn execute_async(&self, script: &str) -> anyhow::Result<Value> {
        self.post("execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Wait until `predicate` (a function body evaluated in the page, such as
    /// `return document.querySelector('.x')?.textContent`) returns something truthy,
    /// and return that. The page is re-checked whenever its DOM changes (a
    /// MutationObserver), never on a timer of ours; an error after `timeout` names
    /// the condition.
    pub async fn wait_for(&self, predicate: &str, timeout: Duration) -> anyhow::Result<Value> {
        let script = format!(
            r#"const done = arguments[arguments.length - 1];
            const check = () => {{ try {{ {predicate} }} catch (e) {{ return null; }} }};
            const first = check();
            if (first) {{ done({{ok: first}}); return; }}
            let timer;
            const observer = new MutationObserver(() => {{
                const v = check();
                if (v) finish({{ok: v}});
            }});
            function finish(r) {{ observer.disconnect(); clearTimeout(timer); done(r); }}
            observer.observe(document, {{subtree: true, childList: true, attributes: true,
                characterData: true}});
            timer = setTimeout(() => finish({{timeout: true}}), arguments[0]);"#
        );
        let ms = timeout.as_millis() as u64;
        let request = self
            .http
            .post(format!("{}/execute/async", self.session))
            .timeout(timeout + Duration::from_secs(10))
            .json(&json!({"script": script, "args": [ms]}));
        let answer = command(request)
            .await
            .with_context(|| format!("waiting for: {predicate}"))?;
        match answer.get("ok") {
            Some(v) => Ok(v.clone()),
            None => bail!("timed out after {timeout:?} waiting for: {predicate}"),
        }
    }

    /// Console messages and page errors since the last call, as `(level, message)`
    /// (levels: `SEVERE` for errors and blocked resources, `WARNING`, `INFO`).
    pub async fn console(&self) -> anyhow::Result<Vec<(String, String)>> {
        let v = self.post("se/log", json!({"type": "browser"})).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                let text = |k: &str| entry[k].as_str().unwrap_or_default().to_owned();
                (text("level"), text("message"))
            })
            .collect())
    }

    /// A PNG of the page area.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = command(self.http.get(format!("{}/screenshot", self.session))).await?;
        let b64 = v.as_str().context("screenshot is not a string")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    /// End the session (Chromium exits) and stop chromedriver.
    pub async fn close(self) {
        let _ = command(self.http.delete(&self.session)).await;
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        command(
            self.http
                .post(format!("{}/{path}", self.session))
                .json(&body),
        )
        .await
        .with_context(|| format!("WebDriver {path}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Whether or not the session was closed (a failed test never gets there), end
        // chromedriver's process group, which we created: Chromium and its helpers.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Send a WebDriver command; its `value`, or its error as an error.
async fn command(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{}: {}",
            value["error"].as_str().unwrap_or("error"),
            value["message"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    Ok(value)
}
