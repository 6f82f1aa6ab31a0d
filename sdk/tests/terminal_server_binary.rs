//! The `terminal-server` binary as a user runs it: help, refused flags, the first line
//! it prints, health before it has an upstream, and a clean exit on SIGTERM.
#![cfg(feature = "server")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_terminal-server"))
}

#[test]
fn help_lists_the_flags() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--master",
        "--token",
        "--display-token",
        "--listen",
        "--memcached",
        "--inline-lots",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn bad_flags_are_refused_clearly() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--master", "http://127.0.0.1:1", "--token", "t"],
            "--display-token",
        ),
        (
            &[
                "--master",
                "ftp://x",
                "--token",
                "t",
                "--display-token",
                "d",
            ],
            "invalid master url",
        ),
        (
            &[
                "--master",
                "http://127.0.0.1:1",
                "--token",
                "t",
                "--display-token",
                "d",
                "--ring",
                "3",
            ],
            "--ring",
        ),
    ];
    for (args, expected) in cases {
        let out = binary()
            .args(args)
            .env_remove("LOTSYNC_TOKEN")
            .env_remove("LOTSYNC_DISPLAY_TOKENS")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn prints_its_address_serves_health_and_stops_on_sigterm() {
    let mut child = binary()
        .args([
            "--master",
            "http://127.0.0.1:9",
            "--token",
            "secret-upstream",
            "--display-token",
            "secret-display",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .expect("the first line is the address")
        .to_owned();
    let rest: Vec<String> = lines.map_while(Result::ok).take(1).collect();
    assert!(
        rest.iter().all(|l| !l.contains("secret")),
        "a token was printed: {rest:?}"
    );
    // No upstream: nothing to serve yet, and it says so.
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "starting");
    let lots = reqwest::Client::new()
        .get(format!("{url}/v1/lots"))
        .bearer_auth("secret-display")
        .send()
        .await
        .unwrap();
    assert_eq!(lots.status(), 503);
    assert!(lots.headers().contains_key("retry-after"));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    });
    let (status, stderr) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .expect("it stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        !stderr.contains("secret"),
        "a token reached the logs: {stderr}"
    );
}
