#![cfg(feature = "demo")]
//! The real binary: in tmux against the in-process demo master, headless against a
//! mock master, and refusing to draw into a pipe.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_tui-client");
const DEADLINE: Duration = Duration::from_secs(30);

/// A tmux server on its own socket, killed when dropped (even when a test fails).
/// The pane's output is piped into a FIFO, so a wait wakes up when the program draws
/// something instead of polling the screen.
struct Tmux {
    socket: String,
    fifo: std::path::PathBuf,
    drawn: mpsc::Receiver<()>,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        // scripts/test.sh installs tmux; a machine without it fails here rather than
        // passing a test that never ran.
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is required for the terminal test (scripts/test.sh installs it)"
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("tui-client-test-{}-{nanos}", std::process::id());
        let fifo = std::env::temp_dir().join(format!("{name}.fifo"));
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo failed");
        let (drawn_tx, drawn) = mpsc::channel();
        {
            let fifo = fifo.clone();
            // Opens the FIFO (blocking until tmux writes to it) and reports each chunk.
            std::thread::spawn(move || {
                let Ok(mut pipe) = std::fs::File::open(&fifo) else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                    if n == 0 || drawn_tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        let tmux = Tmux {
            socket: name,
            fifo,
            drawn,
        };
        let status = tmux
            .command()
            .args([
                "new-session",
                "-d",
                "-s",
                "e2e",
                "-x",
                "120",
                "-y",
                "36",
                command,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        let pipe = format!("cat > '{}'", tmux.fifo.display());
        let status = tmux
            .command()
            .args(["pipe-pane", "-t", "e2e", "-o", &pipe])
            .status()
            .unwrap();
        assert!(status.success(), "tmux pipe-pane failed");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-L").arg(&self.socket);
        command
    }

    fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "e2e"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "e2e", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Check the screen each time the program draws, until `ready` holds; panics with
    /// the last screen at the deadline.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.drawn.recv_timeout(left).is_err() {
                let screen = self.screen();
                assert!(
                    ready(&screen),
                    "timed out waiting for {what}; screen:\n{screen}"
                );
                return screen;
            }
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
        let _ = std::fs::remove_file(&self.fifo);
    }
}

/// Id of the selected row (the one with the `▶` marker).
fn selected(screen: &str) -> Option<String> {
    let line = screen.lines().find(|line| line.contains('▶'))?;
    let after = line.split('▶').nth(1)?;
    after.split_whitespace().next().map(str::to_owned)
}

#[test]
fn dashboard_in_a_real_terminal_against_the_demo() {
    let command = format!("'{BIN}' --demo --bots 3; echo \"exit status $?\"; exec cat");
    let tmux = Tmux::start(&command);

    let screen = tmux.wait_for("the table to show lots", |s| {
        s.contains("LIVE") && s.contains("Lots (") && s.contains("EUR ") && selected(s).is_some()
    });
    let first = selected(&screen).unwrap();

    tmux.keys("j");
    tmux.wait_for("the selection to move", |s| {
        selected(s).is_some_and(|id| id != first)
    });

    tmux.keys("s");
    tmux.wait_for("the sort to change", |s| s.contains("sort: id"));

    tmux.keys("f");
    tmux.wait_for("the floor display", |s| {
        s.contains("Floor ·") && s.contains("closes in")
    });

    tmux.keys("?");
    tmux.wait_for("help", |s| s.contains("Help") && s.contains("cycle sort"));

    tmux.keys("q");
    let screen = tmux.wait_for("the program to exit", |s| s.contains("exit status"));
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(
        !screen.contains("Lots ("),
        "the main screen is restored:\n{screen}"
    );
}

#[test]
fn headless_prints_json_lines_against_a_master() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let master = runtime.block_on(async {
        mock_master::Master::builder()
            .in_memory()
            .demo(true)
            .simulated_bidders(3)
            .start()
            .await
            .unwrap()
    });
    let mut child = Command::new(BIN)
        .args([
            "--headless",
            "--master",
            master.url(),
            "--token",
            master.terminal_token(),
        ])
        .env_remove("LOTSYNC_BIDDER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });

    let start = Instant::now();
    let mut seen = Vec::new();
    let (mut live, mut lot_update) = (false, false);
    while !(live && lot_update) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no live state and lot update in {seen:?}"));
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        live |= value == serde_json::json!({"type": "state", "state": "live"});
        lot_update |= value["type"] == "lot"
            && value["lot"]["id"].is_string()
            && value.get("skipped").is_some();
        seen.push(value["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("snapshot"),
        "{seen:?}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exits cleanly on SIGTERM: {exit:?}");
    reader.join().unwrap();
    for line in lines.try_iter() {
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    runtime.block_on(master.shutdown());
}

#[test]
fn without_a_terminal_it_refuses_to_draw() {
    let out = Command::new(BIN)
        .arg("--demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a terminal") && stderr.contains("--headless"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_get_clear_errors() {
    let out = Command::new(BIN)
        .arg("--headless")
        .env_remove("LOTSYNC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--master URL is required"));

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--bidder-token"));
}
