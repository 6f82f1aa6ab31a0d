//! Every `/metrics` endpoint (the master's, a terminal server's and the SDK's exporter)
//! is checked by Prometheus' own linter, `promtool check metrics`, while bids flow and
//! clients fetch: any parse error or naming complaint fails the test.
//!
//! `promtool` comes with the Debian package `prometheus`; `scripts/test.sh` installs it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use lotsync_tests::*;

const HEARTBEAT: Duration = Duration::from_millis(200);
/// Scrapes of each endpoint while the load runs.
const SCRAPES: usize = 5;

/// What `promtool check metrics` says about `text`: `Ok` when it has no complaint.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool ({}): {said}", out.status))
    }
}

/// The value of the sample line `name` (exact, labels included) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{url}: {content_type}"
    );
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_passes_promtool_under_load() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let ids = create_lots(&master.handle(), 8).await.unwrap();
    let relay = start_terminal_server(master.url(), master.terminal_token(), |b| b)
        .await
        .unwrap();
    let direct = connect(&master).unwrap();
    let exporter = direct
        .export_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let behind: Vec<lotsync::Client> = (0..3).map(|_| relay.connect().unwrap()).collect();
    for client in behind.iter().chain([&direct]) {
        assert!(client.wait_live(Duration::from_secs(30)).await);
    }

    // Load: bids on every lot, each bid a notice and a fetch for every client.
    let handle = master.handle();
    let bidder = tokio::spawn({
        let ids = ids.clone();
        async move {
            for round in 0..40 {
                for id in &ids {
                    let lot = handle.primary_lots().await.unwrap();
                    let lot = lot.iter().find(|l| &l.id == id).unwrap();
                    let who = if round % 2 == 0 { "alice" } else { "bob" };
                    let _ = handle.place_bid(who, id, lot.min_next_bid()).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    let http = reqwest::Client::new();
    let endpoints = [
        format!("{}/metrics", master.url()),
        format!("{}/metrics", relay.url),
        format!("http://{exporter}/metrics"),
    ];
    let mut last = Vec::new();
    for _ in 0..SCRAPES {
        last.clear();
        for url in &endpoints {
            let text = scrape(&http, url).await;
            if let Err(complaint) = promtool_check(&text) {
                panic!("{url}: {complaint}\n{text}");
            }
            last.push(text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bidder.await.unwrap();

    // The endpoints were checked with something in them, not empty registries.
    let [master_text, relay_text, exporter_text] = &last[..] else {
        unreachable!()
    };
    assert!(
        sample(master_text, "lotsync_writes_total{kind=\"bid\"}").unwrap() > 0.0,
        "{master_text}"
    );
    assert!(
        sample(master_text, "lotsync_commit_batch_size_count").unwrap() > 0.0,
        "{master_text}"
    );
    assert!(
        sample(relay_text, "lotsync_notices_total").unwrap() > 0.0,
        "{relay_text}"
    );
    assert!(
        sample(relay_text, "lotsync_downstream_subscribers").unwrap() >= 3.0,
        "{relay_text}"
    );
    assert!(
        sample(exporter_text, "lotsync_notice_to_mirror_seconds_count").unwrap() > 0.0,
        "{exporter_text}"
    );
    for text in &last {
        assert!(promtool_check(text).is_ok());
    }

    for client in behind.iter().chain([&direct]) {
        client.shutdown().await;
    }
    relay.stop().await;
}

#[test]
fn promtool_complains_about_a_badly_named_metric() {
    // The check above can fail: a counter without `_total` and a unit in milliseconds.
    let bad = "# HELP lotsync_fetch_wait_ms Time.\n# TYPE lotsync_fetch_wait_ms counter\nlotsync_fetch_wait_ms 1\n";
    assert!(promtool_check(bad).is_err());
}
