//! The wall display against the real thing: a master, a terminal server following
//! it, Chromium on the terminal server's `/display`.
//!
//! - the board shows the master's open lots; a bid placed on the master appears; an
//!   anti-sniping extension says EXTENDED; a lot that closes shows PASSED;
//! - the terminal server killed (SIGKILL) and restarted on the same port: the page
//!   shows the reconnecting banner meanwhile and catches up without a reload;
//! - without a token, or with a wrong one, the page shows no lot data.
//!
//! The terminal server that gets killed is this test binary itself, re-run with
//! `--exact terminal_server::child` (as the crash test runs its master).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lotsync::protocol::LotStatus;
use lotsync_tests::browser::Browser;
use lotsync_tests::hall::{DISPLAY_TOKEN, Hall};
use lotsync_tests::lot_input;
use mock_master::Master;
use serde_json::json;

use super::WAIT;

const HEARTBEAT: Duration = Duration::from_millis(300);
const ENV_MASTER: &str = "LOTSYNC_DISPLAY_CHILD_MASTER";
const ENV_TOKEN: &str = "LOTSYNC_DISPLAY_CHILD_TOKEN";
const ENV_LISTEN: &str = "LOTSYNC_DISPLAY_CHILD_LISTEN";

/// A master whose anti-sniping window covers every short lot here (any bid on a lot
/// ending within a minute extends it), with bidders.
async fn master() -> Master {
    Master::builder()
        .in_memory()
        .heartbeat(HEARTBEAT)
        .anti_snipe(Duration::from_secs(60))
        .bidder("alice", "alice-token")
        .bidder("bob", "bob-token")
        .start()
        .await
        .unwrap()
}

/// Open lots `lot-0..lot-2` ending in an hour, and one scheduled lot the board must
/// not show.
async fn floor(master: &Master) {
    let handle = master.handle();
    for i in 0..3 {
        let input = lot_input(&format!("Estate car {i}"), 10_000 + i * 1_000);
        handle.put_lot(&format!("lot-{i}"), input).await.unwrap();
    }
    let mut later = lot_input("Coupe not yet open", 50_000);
    later.status = Some(LotStatus::Scheduled);
    later.starts_at = chrono::Utc::now() + chrono::Duration::hours(1);
    later.ends_at = later.starts_at + chrono::Duration::hours(1);
    handle.put_lot("later", later).await.unwrap();
}

fn tile(id: &str, seq: u64, text: &str) -> String {
    format!(
        r#"const e = document.querySelector('.tile[data-lot-id="{id}"]');
        return e && Number(e.dataset.seq) >= {seq} && e.textContent.includes("{text}");"#
    )
}

#[tokio::test]
async fn the_board_follows_the_master_through_a_terminal_server() {
    let master = master().await;
    floor(&master).await;
    let handle = master.handle();
    let hall = Hall::start(
        master.url(),
        master.terminal_token(),
        "127.0.0.1:0",
        HEARTBEAT,
    )
    .await
    .unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&hall.display_url("layout=board"))
        .await
        .unwrap();
    let url = browser.url().await.unwrap();
    assert!(
        !url.contains(DISPLAY_TOKEN),
        "the token stayed in the URL: {url}"
    );
    assert!(url.ends_with("/display?layout=board"), "{url}");

    // The master's open lots, and not the scheduled one.
    for i in 0..3 {
        browser
            .wait_for(
                &tile(&format!("lot-{i}"), 1, &format!("Estate car {i}")),
                WAIT,
            )
            .await
            .unwrap();
    }
    let later = browser
        .execute(
            r#"return document.body.textContent.includes("Coupe");"#,
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(later, json!(false), "a scheduled lot is on the board");

    // A bid on the master reaches the page.
    let bid = handle.place_bid("alice", "lot-1", 12_300).await.unwrap();
    let placed = Instant::now();
    browser
        .wait_for(&tile("lot-1", bid.seq, "€123"), WAIT)
        .await
        .unwrap();
    println!(
        "bid on the master to the page's DOM: {:?}",
        placed.elapsed()
    );
    let shown = browser
        .execute(
            r#"const e = document.querySelector('.tile[data-lot-id="lot-1"]');
            return [e.querySelector('.leader').textContent, e.querySelector('.bids').textContent,
                    e.querySelector('.next-bid').textContent];"#,
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        shown,
        json!(["alice", "1", "€124"]),
        "[leader, bids, next bid]"
    );

    // A lot about to close: a bid extends it (anti-sniping), then it closes unsold.
    let mut short = lot_input("Hatchback closing soon", 20_000);
    short.ends_at = chrono::Utc::now() + chrono::Duration::seconds(30);
    handle.put_lot("short", short).await.unwrap();
    browser
        .wait_for(&tile("short", 1, "CLOSING"), WAIT)
        .await
        .unwrap();
    let bid = handle.place_bid("bob", "short", 20_000).await.unwrap();
    browser
        .wait_for(&tile("short", bid.seq, "EXTENDED"), WAIT)
        .await
        .unwrap();
    let mut closing = lot_input("Saloon closing now", 30_000);
    closing.ends_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    handle.put_lot("closing", closing).await.unwrap();
    let status = browser
        .wait_for(
            r#"const e = document.querySelector('.tile[data-lot-id="closing"] .badge');
            return e && /SOLD|PASSED/.test(e.textContent) && e.textContent;"#,
            WAIT,
        )
        .await
        .unwrap();
    assert!(status.as_str().unwrap().contains("PASSED"), "{status}");
    // Under the terminal server's Content-Security-Policy: no violation, no error.
    let errors: Vec<_> = browser
        .console()
        .await
        .unwrap()
        .into_iter()
        .filter(|(level, message)| level == "SEVERE" || message.contains("Content Security"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.close().await;
    hall.stop().await;
    master.shutdown().await;
}

/// Not a test of its own: the terminal server process of
/// `the_page_rides_out_a_terminal_server_restart`. Does nothing unless started by it.
#[test]
fn child() {
    let (Ok(master), Ok(token), Ok(listen)) = (
        std::env::var(ENV_MASTER),
        std::env::var(ENV_TOKEN),
        std::env::var(ENV_LISTEN),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let hall = Hall::start(&master, &token, &listen, HEARTBEAT)
            .await
            .unwrap();
        println!("listening on {}", hall.url());
        // Runs until the parent kills this process.
        std::future::pending::<()>().await;
    });
}

/// A terminal server in a child process, on `listen`; returns it and its URL.
fn spawn_terminal_server(master: &Master, listen: &str) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "terminal_server::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_MASTER, master.url())
        .env(ENV_TOKEN, master.terminal_token())
        .env(ENV_LISTEN, listen)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness's "test ... " is on the same line.
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(WAIT)
        .expect("the terminal server child did not start");
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_rides_out_a_terminal_server_restart() {
    let master = master().await;
    floor(&master).await;
    let handle = master.handle();
    let (mut child, url) = spawn_terminal_server(&master, "127.0.0.1:0");
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&format!("{url}/display?token={DISPLAY_TOKEN}"))
        .await
        .unwrap();
    browser
        .wait_for(&tile("lot-0", 1, "€100"), WAIT)
        .await
        .unwrap();
    browser
        .execute("window.__sameDocument = true;", json!([]))
        .await
        .unwrap();

    child.kill().unwrap();
    child.wait().unwrap();
    let banner = browser
        .wait_for(
            r#"const b = document.getElementById("banner");
            return document.body.dataset.connection === "reconnecting" && !b.hidden
                && b.textContent;"#,
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        banner.as_str().unwrap().contains("Reconnecting"),
        "{banner}"
    );
    assert!(banner.as_str().unwrap().contains(" ago"), "{banner}");
    // The lots stay on screen while the server is away.
    browser
        .wait_for(&tile("lot-0", 1, "€100"), WAIT)
        .await
        .unwrap();

    // Bids while the terminal server is down; the page must catch up on them.
    let first = handle.place_bid("alice", "lot-0", 15_000).await.unwrap();
    let second = handle.place_bid("bob", "lot-2", 18_000).await.unwrap();
    let listen = url.trim_start_matches("http://").to_owned();
    let (mut child, _) = spawn_terminal_server(&master, &listen);
    browser
        .wait_for(&tile("lot-0", first.seq, "€150"), WAIT)
        .await
        .unwrap();
    browser
        .wait_for(&tile("lot-2", second.seq, "€180"), WAIT)
        .await
        .unwrap();
    browser
        .wait_for(
            r#"return document.body.dataset.connection === "live"
                && document.getElementById("banner").hidden;"#,
            WAIT,
        )
        .await
        .unwrap();
    // And it follows live again.
    let third = handle.place_bid("alice", "lot-2", 19_000).await.unwrap();
    browser
        .wait_for(&tile("lot-2", third.seq, "€190"), WAIT)
        .await
        .unwrap();
    let same = browser
        .execute("return window.__sameDocument === true;", json!([]))
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");
    browser.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
    master.shutdown().await;
}

#[tokio::test]
async fn without_a_valid_token_no_lot_data_is_shown() {
    let master = master().await;
    floor(&master).await;
    let hall = Hall::start(
        master.url(),
        master.terminal_token(),
        "127.0.0.1:0",
        HEARTBEAT,
    )
    .await
    .unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    let cases = [
        (format!("{}/display", hall.url()), "not been authorised"),
        (
            format!("{}/display?token=wrong-token", hall.url()),
            "not valid",
        ),
        (
            format!("{}/display?layout=lot&lot=lot-0&token=", hall.url()),
            "not valid",
        ),
    ];
    for (url, expected) in cases {
        browser.goto(&url).await.unwrap();
        let page = browser
            .wait_for(
                r#"const d = document.querySelector('.denied');
                return d && [document.body.textContent, document.querySelectorAll('[data-lot-id]').length];"#,
                WAIT,
            )
            .await
            .unwrap();
        let text = page[0].as_str().unwrap();
        assert!(text.contains(expected), "{url}: {text}");
        assert!(
            !text.contains("Estate car") && !text.contains('€'),
            "{url}: lot data shown"
        );
        assert_eq!(page[1], json!(0), "{url}: lot elements on the page");
        // The page's own scripts cannot read lots either: no cookie was issued.
        let status = browser
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                fetch("/v1/lots", {credentials: "same-origin"}).then((r) => done(r.status));"#,
            )
            .await
            .unwrap();
        assert_eq!(status, json!(401), "{url}");
    }
    browser.close().await;
    hall.stop().await;
    master.shutdown().await;
}
