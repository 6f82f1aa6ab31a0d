//! Scenario files: the example in the repository plays the same way twice for the same
//! seed, bad files name the line and field, and the binary plays a file and exits.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use lotsync::protocol::{LotStatus, Money};
use mock_master::scenario::{OnEnd, Report, Scenario, ScenarioError};
use mock_master::{AppState, server};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/example.toml");

/// What a play leaves behind, lot by lot: (id, status, price, bids, leader).
type Outcome = Vec<(String, LotStatus, Money, u32, Option<String>)>;

/// A master for `config`, served on a free port until its state is shut down.
async fn serve(
    config: mock_master::MasterConfig,
) -> (AppState, tokio::task::JoinHandle<std::io::Result<()>>) {
    let state = AppState::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn(server::serve(
        state.clone(),
        listener,
        std::future::pending(),
    ));
    (state, server)
}

/// Serve a fresh in-memory master, play the example with `seed`, and return the report,
/// the outcome and the head.
async fn play_example(seed: u64) -> (Report, Outcome, u64) {
    let scenario = Scenario::load(Path::new(EXAMPLE), Some(seed)).unwrap();
    assert_eq!(scenario.on_end(), OnEnd::Serve);
    let mut config = config();
    config.chaos = None;
    config.seed = None;
    scenario.prepare(&mut config);
    assert!(config.chaos.is_some(), "faults in the file enable chaos");
    assert_eq!(config.seed, Some(seed));
    let (state, server) = serve(config).await;
    let report = scenario.play(&state).await.unwrap();
    let outcome = state
        .store
        .primary_lots()
        .await
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l.id,
                l.status,
                l.current_price,
                l.bid_count,
                l.leading_bidder,
            )
        })
        .collect();
    let head = state.store.log_tail().head();
    state.shutdown.cancel();
    server.await.unwrap().unwrap();
    (report, outcome, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_plays_the_same_way_for_the_same_seed() {
    let ((a, outcome_a, head_a), (b, outcome_b, head_b)) =
        tokio::join!(play_example(7), play_example(7));
    eprintln!("example, seed 7: {a:?}, head {head_a}");
    assert_eq!(a, b);
    assert_eq!(outcome_a, outcome_b);
    assert_eq!(head_a, head_b);
    assert_eq!((a.lots, a.faults), (3, 2));
    assert!(a.bids_accepted >= 35, "{a:?}");
    let status = |id: &str| outcome_a.iter().find(|l| l.0 == id).unwrap().1;
    assert_eq!(status("volvo-v70"), LotStatus::Withdrawn);
    assert_ne!(status("saab-93"), LotStatus::Open);
    assert_eq!(status("golf-7"), LotStatus::Open, "opened by the master");
    let golf = outcome_a.iter().find(|l| l.0 == "golf-7").unwrap();
    assert!(golf.3 >= 5, "bids on the lot the master opened: {golf:?}");

    let (other, outcome_other, _) = play_example(8).await;
    assert_eq!(other.steps, a.steps);
    assert_ne!(outcome_other, outcome_a, "another seed bids differently");
}

fn error_of(text: &str) -> String {
    match Scenario::parse(text, "test.toml", None) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const LOT: &str = "[[lots]]\nid = \"a\"\ntitle = \"A car\"\nstarting_price = 100\nincrement = 10\n";

#[test]
fn bad_files_name_the_line_and_the_field() {
    let cases: Vec<(String, &[&str])> = vec![
        ("name = \"x\"\nseed = \n".into(), &["line 2"]),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nbid = {{ lot = \"a\", bidder = \"al\", amount = \"ten\" }}\n"
            ),
            &["line 9", "amount"],
        ),
        (format!("{LOT}colour = \"red\"\n"), &["line 6", "colour"]),
        (
            format!("{LOT}\n[[steps]]\nat_ms = -5\nstatus = {{ lot = \"a\", to = \"open\" }}\n"),
            &["line 7", "steps[0].at_ms", "between 0"],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nstatus = {{ lot = \"b\", to = \"open\" }}\n"),
            &["line 7", "steps[0].status.lot", "no lot \"b\""],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nfaults = {{ notice_drop_rate = 1.5 }}\n"),
            &[
                "line 7",
                "steps[0].faults.notice_drop_rate",
                "between 0 and 1",
            ],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nfaults = {{ fetch_error_rate = -0.1 }}\n"),
            &["steps[0].faults.fetch_error_rate"],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nfaults = {{ lag = 3 }}\n"),
            &["line 9", "lag"],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\n"),
            &["line 7", "steps[0]", "exactly one"],
        ),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nbid = {{ lot = \"a\", bidder = \"x\" }}\nstatus = {{ lot = \"a\", to = \"open\" }}\n"
            ),
            &["steps[0]", "exactly one"],
        ),
        (
            format!(
                "{LOT}at_ms = 50\n\n[[steps]]\nat_ms = 5\nbid = {{ lot = \"a\", bidder = \"x\" }}\n"
            ),
            &["line 8", "only created at 50"],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nbid = {{ lot = \"a\", bidder = \"no one\" }}\n"),
            &["steps[0].bid.bidder"],
        ),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nbid = {{ lot = \"a\", bidder = \"x\", amount = 0 }}\n"
            ),
            &["steps[0].bid.amount"],
        ),
        (
            LOT.replace("id = \"a\"", "id = \"a/b\""),
            &["line 1", "lots[0].id"],
        ),
        (
            LOT.replace("increment = 10", "increment = -10"),
            &["lots[0].increment"],
        ),
        (format!("{LOT}{}", &LOT[9..]), &["duplicate key"]),
        (format!("{LOT}\n{LOT}"), &["line 7", "lots[1].id", "twice"]),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nrandom_bids = {{ bidders = [\"x\"], count = 0, every_ms = 1 }}\n"
            ),
            &["steps[0].random_bids.count"],
        ),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nrandom_bids = {{ lots = [\"zz\"], bidders = [\"x\"], count = 2, every_ms = 1 }}\n"
            ),
            &["steps[0].random_bids.lots[0]", "no lot \"zz\""],
        ),
        ("on_end = \"later\"\n".into(), &["line 1", "on_end"]),
        (
            LOT.replace(
                "increment = 10",
                "increment = [{ from = 0, step = 10 }, { from = 0, step = 20 }]",
            ),
            &["line 1", "lots[0].increment"],
        ),
        (
            LOT.replace("increment = 10", "increment = [{ from = 5, step = 10 }]"),
            &["lots[0].increment"],
        ),
        (
            format!("{LOT}lane = \"a b\"\n"),
            &["line 1", "lots[0].lane"],
        ),
        (
            "[[lanes]]\nlane = \"A\"\ngap_ms = 99999999\n".into(),
            &["line 1", "lanes[0].gap_ms"],
        ),
        (
            format!(
                "{LOT}\n[[steps]]\nat_ms = 5\nmax_bid = {{ lot = \"a\", bidder = \"al\", max_amount = 100, amount = 200 }}\n"
            ),
            &["line 7", "steps[0].max_bid"],
        ),
        (
            format!("{LOT}\n[[steps]]\nat_ms = 5\nmax_bid = {{ lot = \"a\", bidder = \"al\" }}\n"),
            &["max_amount"],
        ),
    ];
    let mut wrong = Vec::new();
    for (text, wanted) in &cases {
        let error = error_of(text);
        if let Some(want) = wanted.iter().find(|w| !error.contains(*w)) {
            wrong.push(format!("{text}\nshould contain {want:?}: {error}\n"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("{} bad scenario files refused", cases.len());
    let missing = Scenario::load(Path::new("/nonexistent/scenario.toml"), None).unwrap_err();
    assert!(matches!(missing, ScenarioError::Io { .. }), "{missing}");
}

/// Lanes, a ladder, a reserve and a maximum, played: the maximum's owner is bid up one
/// step of the ladder's band at a time against direct bids, and leads.
const AUCTION_RULES: &str = r#"
on_end = "serve"

[[lanes]]
lane = "A"
sequential = true
gap_ms = 0

[[lots]]
id = "first"
title = "First car"
starting_price = 100000
increment = [{ from = 0, step = 1000 }, { from = 200000, step = 5000 }]
reserve_price = 150000
lane = "A"
run_order = 1
status = "open"

[[lots]]
id = "second"
title = "Second car"
starting_price = 50000
increment = 500
lane = "A"
run_order = 2

[[steps]]
at_ms = 0
max_bid = { lot = "first", bidder = "carol", max_amount = 230000 }

[[steps]]
at_ms = 10
bid = { lot = "first", bidder = "dave", amount = 199000 }

[[steps]]
at_ms = 20
bid = { lot = "first", bidder = "dave" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_ladders_reserves_and_maximums_play_by_the_rules() {
    let scenario = Scenario::parse(AUCTION_RULES, "rules.toml", None).unwrap();
    let (state, server) = serve(config()).await;
    let report = scenario.play(&state).await.unwrap();
    assert_eq!(
        (report.lots, report.bids_accepted, report.rejected),
        (2, 3, 0),
        "{report:?}"
    );

    let lanes = state.store.lanes().await.unwrap();
    assert_eq!(lanes.len(), 1);
    assert!(lanes[0].lane == "A" && lanes[0].sequential && lanes[0].gap_ms == 0);
    let first = state.store.admin_lot("first").await.unwrap().unwrap();
    assert_eq!(first.reserve_price, Some(150_000));
    let lot = &first.lot;
    assert_eq!((lot.lane.as_deref(), lot.run_order), (Some("A"), Some(1)));
    assert_eq!(lot.increment_ladder.len(), 2);
    // carol's maximum opens at 100,000; dave bids 199,000 and carol answers one step
    // of the 0.. band (200,000); dave bids the minimum of the 200,000.. band (205,000)
    // and carol answers one step of that band.
    assert_eq!(lot.leading_bidder.as_deref(), Some("carol"));
    assert_eq!(lot.current_price, 210_000);
    assert_eq!(lot.increment, 5_000, "the step of the current band");
    assert_eq!(lot.reserve_met, Some(true));
    let second = state.store.admin_lot("second").await.unwrap().unwrap();
    assert_eq!(second.lot.lane.as_deref(), Some("A"));
    assert_eq!(second.lot.run_order, Some(2));

    let audit = state.store.audit("first", 0).await.unwrap().unwrap();
    let proxy: Vec<_> = audit
        .iter()
        .filter(|e| e.origin == lotsync::protocol::AuditOrigin::Proxy && e.accepted)
        .map(|e| e.amount)
        .collect();
    assert!(
        proxy.contains(&Some(200_000)) && proxy.contains(&Some(210_000)),
        "proxy bids in the audit trail: {audit:?}"
    );
    state.shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn random_bids_expand_from_the_seed() {
    let text = format!(
        "seed = 3\n{LOT}\n[[steps]]\nat_ms = 0\nrandom_bids = {{ bidders = [\"x\", \"y\"], count = 50, every_ms = 10 }}\n"
    );
    let a = Scenario::parse(&text, "t", None).unwrap();
    assert_eq!((a.seed(), a.len(), a.uses_faults()), (3, 51, false));
    let b = Scenario::parse(&text, "t", Some(4)).unwrap();
    assert_eq!(b.seed(), 4);
    assert_ne!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(
        format!("{a:?}"),
        format!("{:?}", Scenario::parse(&text, "t", None).unwrap())
    );
}

#[test]
fn the_binary_plays_a_file_then_exits_or_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("short.toml");
    std::fs::write(
        &file,
        format!(
            "on_end = \"exit\"\n{LOT}status = \"open\"\n\n[[steps]]\nat_ms = 50\nrandom_bids = {{ bidders = [\"x\"], count = 5, every_ms = 10 }}\n\n[[steps]]\nat_ms = 150\nfaults = {{ fetch_delay_ms = 1 }}\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_mock-master");
    let mut child = Command::new(bin)
        .args(["--in-memory", "--listen", "127.0.0.1:0", "--seed", "5"])
        .arg("--scenario")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child's exit is the event: its stderr reaches end-of-file when it exits.
    // Reading it on a thread also keeps the pipe drained while the scenario plays.
    let stderr = child.stderr.take().unwrap();
    let (logs_tx, logs_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = logs_tx.send(std::io::read_to_string(stderr).unwrap());
    });
    let Ok(logs) = logs_rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the master did not exit after the scenario");
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{logs}");
    assert_eq!(logs.matches("bid accepted").count(), 5, "{logs}");
    assert!(logs.contains("faults switched"), "{logs}");
    assert!(logs.contains("scenario finished"), "{logs}");

    std::fs::write(
        &file,
        format!("{LOT}\n[[steps]]\nat_ms = -1\nstatus = {{ lot = \"a\", to = \"open\" }}\n"),
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["--in-memory", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 7") && stderr.contains("steps[0].at_ms"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listened");
}

/// `AppState` used by the shared helpers; keeps the import list honest.
#[allow(dead_code)]
fn _state(_: &AppState) {}
