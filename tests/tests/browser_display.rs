//! The wall display in a real browser (headless Chromium over WebDriver).
//!
//! Against a fake terminal server that misbehaves on request: versions never go
//! back, a reset or a new epoch reloads the snapshot without blanking, countdowns run
//! on the master's clock, a lost upstream shows a banner, every layout fits the screen
//! from 1280×720 to 3840×2160 with readable contrast, settled lots leave the board,
//! money is formatted exactly. Against the real terminal server: see
//! `browser_display/terminal_server.rs`.
//!
//! Every wait is on a DOM condition (a MutationObserver in the page), never a sleep.
//! These tests fail when no browser can be started.

use std::time::Duration;

use chrono::Utc;
use lotsync_tests::browser::Browser;
use lotsync_tests::fake_terminal::{FakeTerminal, lot};
use serde_json::{Value, json};

#[path = "browser_display/terminal_server.rs"]
mod terminal_server;

/// Generous: the machine is shared, and Chromium's first start is slow.
const WAIT: Duration = Duration::from_secs(30);

fn snapshot(epoch: &str, seq: u64, lots: Vec<Value>) -> Value {
    json!({"epoch": epoch, "seq": seq, "lots": lots, "missing": []})
}

fn notice(seq: u64, lot: Value) -> Value {
    json!({"seq": seq, "lot_id": lot["id"], "kind": "bid", "at": Utc::now().to_rfc3339(), "lot": lot})
}

/// A predicate (function body) true once lot `id` is shown at version `seq` with
/// `text` in it.
fn shows(id: &str, seq: u64, text: &str) -> String {
    format!(
        r#"const e = document.querySelector('[data-lot-id="{id}"]');
        return e && e.dataset.seq === "{seq}" && e.textContent.includes("{text}");"#
    )
}

/// Watch for a moment with no lot on screen at all (the page went blank).
const WATCH_BLANK: &str = r#"
    window.__blank = false;
    new MutationObserver(() => {
        if (!document.querySelector('[data-lot-id]')) window.__blank = true;
    }).observe(document.body, {subtree: true, childList: true, attributes: true});
    window.__sameDocument = true;"#;

#[tokio::test]
async fn a_misbehaving_server_cannot_move_a_lot_back_in_time() {
    let hour = chrono::Duration::hours(1);
    let fake = FakeTerminal::start(snapshot(
        "e1",
        10,
        vec![lot("a", "Volvo V70", 10, 1_500_000, hour)],
    ))
    .await
    .unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&format!("{}/display", fake.url()))
        .await
        .unwrap();
    browser
        .wait_for(&shows("a", 10, "€15,000"), WAIT)
        .await
        .unwrap();
    fake.wait_streams(1, WAIT).await.unwrap();
    browser.execute(WATCH_BLANK, json!([])).await.unwrap();

    // A newer version is shown, its price highlighted (checked in the same DOM change).
    fake.send(
        "notice",
        Some(11),
        &notice(11, lot("a", "Volvo V70", 11, 1_600_000, hour)),
    );
    browser
        .wait_for(
            &format!(
                "{} && !!document.querySelector('[data-lot-id=\"a\"] .price.flash');",
                shows("a", 11, "€16,000").trim_end_matches(';')
            ),
            WAIT,
        )
        .await
        .unwrap();

    // An older version, and a malformed one, are not; the lot after them is.
    fake.send(
        "notice",
        Some(12),
        &notice(12, lot("a", "Volvo V70", 5, 900_000, hour)),
    );
    let mut malformed = lot("a", "Volvo V70", 13, 1_700_000, hour);
    malformed["current_price"] = json!(17000.5);
    fake.send("notice", Some(13), &notice(13, malformed));
    fake.send(
        "notice",
        Some(14),
        &notice(14, lot("b", "Saab 9-3", 14, 2_000_000, hour)),
    );
    browser
        .wait_for(&shows("b", 14, "€20,000"), WAIT)
        .await
        .unwrap();
    let a = browser
        .execute(
            r#"const e = document.querySelector('[data-lot-id="a"]');
            return [e.dataset.seq, e.textContent];"#,
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(a[0], "11", "an older or malformed version was applied: {a}");
    assert!(a[1].as_str().unwrap().contains("€16,000"), "{a}");
    assert!(!a[1].as_str().unwrap().contains("€9,000"), "{a}");

    // A reset reloads the snapshot; the old data stays on screen meanwhile.
    let reads = fake.snapshot_reads();
    fake.set_snapshot(snapshot(
        "e1",
        20,
        vec![
            lot("a", "Volvo V70", 20, 1_800_000, hour),
            lot("b", "Saab 9-3", 14, 2_000_000, hour),
        ],
    ));
    fake.send(
        "reset",
        None,
        &json!({"epoch": "e1", "head": 20, "oldest_retained": 15, "reason": "test"}),
    );
    browser
        .wait_for(&shows("a", 20, "€18,000"), WAIT)
        .await
        .unwrap();
    assert!(fake.snapshot_reads() > reads);

    // A new epoch is another history: its lower sequence numbers replace ours.
    fake.set_snapshot(snapshot(
        "e2",
        3,
        vec![lot("a", "Volvo V70", 3, 1_100_000, hour)],
    ));
    fake.send(
        "heartbeat",
        None,
        &json!({"epoch": "e2", "head": 3, "at": Utc::now().to_rfc3339()}),
    );
    browser
        .wait_for(&shows("a", 3, "€11,000"), WAIT)
        .await
        .unwrap();
    browser
        .wait_for(
            r#"return !document.querySelector('[data-lot-id="b"]');"#,
            WAIT,
        )
        .await
        .unwrap();
    let page = browser
        .execute("return [window.__sameDocument, window.__blank];", json!([]))
        .await
        .unwrap();
    assert_eq!(page, json!([true, false]), "[same document, went blank]");
    browser.close().await;
}

#[tokio::test]
async fn countdowns_run_on_the_master_clock_and_a_lost_upstream_shows_a_banner() {
    // The screen's clock says the lot ends in two hours; the master's says otherwise.
    let two_hours = chrono::Duration::hours(2);
    let lot_a = lot("a", "Audi A4 Avant", 7, 1_000_000, two_hours);
    let ends_at: chrono::DateTime<Utc> = lot_a["ends_at"].as_str().unwrap().parse().unwrap();
    let fake = FakeTerminal::start(snapshot("e1", 7, vec![lot_a.clone()]))
        .await
        .unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&format!("{}/display?layout=lot&lot=a", fake.url()))
        .await
        .unwrap();
    browser
        .wait_for(&shows("a", 7, "OPEN"), WAIT)
        .await
        .unwrap();
    fake.wait_streams(1, WAIT).await.unwrap();

    let heartbeat = |master_now: chrono::DateTime<Utc>, stale: bool| json!({"epoch": "e1", "head": 7, "at": master_now.to_rfc3339(), "stale": stale});
    fake.send(
        "heartbeat",
        None,
        &heartbeat(ends_at - chrono::Duration::seconds(90), false),
    );
    let countdown = browser
        .wait_for(
            r#"const t = document.querySelector('.single .countdown').textContent;
            return /^1:[23]\d$/.test(t) && t;"#,
            WAIT,
        )
        .await
        .unwrap();
    assert!(countdown.is_string());
    fake.send(
        "heartbeat",
        None,
        &heartbeat(ends_at - chrono::Duration::seconds(30), false),
    );
    browser
        .wait_for(
            r#"const e = document.querySelector('.single');
            return e.dataset.phase === "closing" && e.textContent.includes("CLOSING");"#,
            WAIT,
        )
        .await
        .unwrap();

    // Anti-sniping moved the end: the lot says so.
    let mut extended = lot_a.clone();
    extended["seq"] = json!(8);
    extended["ends_at"] = json!((ends_at + chrono::Duration::seconds(10)).to_rfc3339());
    fake.send("notice", Some(8), &notice(8, extended));
    browser
        .wait_for(
            r#"const x = document.querySelector('.single .extended');
            return x && !x.hidden && x.textContent === "EXTENDED";"#,
            WAIT,
        )
        .await
        .unwrap();

    // The terminal server lost the master: a banner with the data's age, data kept.
    fake.send(
        "heartbeat",
        None,
        &json!({"epoch": "e1", "head": 8, "at": Utc::now().to_rfc3339(), "stale": true}),
    );
    let banner = browser
        .wait_for(
            r#"const b = document.getElementById("banner");
            return document.body.dataset.connection === "stale" && !b.hidden && b.textContent;"#,
            WAIT,
        )
        .await
        .unwrap();
    let banner = banner.as_str().unwrap();
    assert!(banner.contains("lost the auction master"), "{banner}");
    assert!(
        banner.contains(" ago"),
        "the banner gives the data's age: {banner}"
    );
    browser
        .wait_for(&shows("a", 8, "€10,000"), WAIT)
        .await
        .unwrap();
    fake.send(
        "heartbeat",
        None,
        &json!({"epoch": "e1", "head": 8, "at": Utc::now().to_rfc3339()}),
    );
    browser
        .wait_for(
            r#"return document.body.dataset.connection === "live"
                && document.getElementById("banner").hidden;"#,
            WAIT,
        )
        .await
        .unwrap();
    browser.close().await;
}

/// Problems of the page as laid out now (after the next two frames): text outside
/// the screen, a price or figure cut off, a single-lot price under a tenth of the screen
/// height, text under 4.5:1 contrast.
const LAYOUT_PROBLEMS: &str = r#"
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => {
  const problems = [];
  const W = innerWidth, H = innerHeight;
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const e of document.querySelectorAll("body *")) {
    if (!e.checkClientRects || e.getClientRects().length === 0) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = e.getBoundingClientRect();
    const name = `${e.tagName.toLowerCase()}.${e.className} "${e.textContent.slice(0, 30)}"`;
    if (r.right > W + 1 || r.bottom > H + 1 || r.left < -1 || r.top < -1) {
      problems.push(`off screen: ${name} ${JSON.stringify(r)}`);
    }
    const fg = rgb(getComputedStyle(e).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: ${name}`);
  }
  for (const p of document.querySelectorAll(".price, .facts dd")) {
    if (p.getClientRects().length && p.scrollWidth > p.clientWidth + 1) {
      problems.push(`cut off: "${p.textContent}" ${p.scrollWidth} > ${p.clientWidth}`);
    }
  }
  const big = document.querySelector(".big-price");
  if (big && big.getClientRects().length && parseFloat(getComputedStyle(big).fontSize) < H / 10) {
    problems.push(`single-lot price ${getComputedStyle(big).fontSize} under a tenth of ${H}px`);
  }
  done(problems);
}));"#;

fn floor() -> Value {
    let hour = chrono::Duration::hours(1);
    let mut lots = vec![
        lot(
            "lane-1",
            "2019 Volvo V70 D4 Momentum Edition",
            11,
            123_456_700,
            hour,
        ),
        lot("lane-2", "2021 Porsche Macan S", 12, 9_876_543_200, hour),
        lot(
            "lane-3",
            "2018 Volkswagen Golf 1.5 TSI",
            13,
            1_000_000,
            chrono::Duration::seconds(40),
        ),
        lot("lane-4", "2020 Toyota RAV4 Hybrid", 14, 2_450_000, hour),
        lot("lane-5", "2017 Skoda Superb 2.0 TDI", 15, 1_825_000, hour),
    ];
    for (i, status) in ["closed", "sold", "passed", "withdrawn"].iter().enumerate() {
        let mut l = lot(
            &format!("lane-{}", 6 + i),
            "2016 Ford Focus",
            16 + i as u64,
            1_300_000,
            hour,
        );
        l["status"] = json!(status);
        lots.push(l);
    }
    // Lanes and reserves (met, not met, none) take room on tiles and the single view.
    for (l, lane, run_order, reserve_met) in [
        (0, Some("A"), Some(1), Some(true)),
        (1, Some("lane-B-long-name"), Some(12), Some(false)),
        (3, None, None, Some(true)),
    ] {
        if let Some(lane) = lane {
            lots[l]["lane"] = json!(lane);
            lots[l]["run_order"] = json!(run_order);
        }
        lots[l]["reserve_met"] = json!(reserve_met);
    }
    snapshot("e1", 30, lots)
}

#[tokio::test]
async fn every_layout_fits_the_screen_with_readable_contrast() {
    let fake = FakeTerminal::start(floor()).await.unwrap();
    let mut browser = Browser::start(1280, 720).await.unwrap();
    let layouts = [
        (
            "board",
            "return document.querySelectorAll('.tile[data-seq]').length === 9;",
        ),
        (
            "lot&lot=lane-2",
            r#"const s = document.querySelector('.single[data-lot-id="lane-2"]');
            return s && s.querySelector('.lane').textContent === "Lane lane-B-long-name · #12"
                && s.querySelector('.reserve').textContent === "\u{2715} Reserve not met";"#,
        ),
        // Following: the open lot closing soonest.
        (
            "lot",
            r#"return document.querySelector('.single[data-lot-id="lane-3"]');"#,
        ),
        (
            "rotate&every=3",
            "return document.querySelector('.single[data-seq]');",
        ),
    ];
    // What a tile says of its lane and reserve.
    let tags = |id: &str| {
        format!(
            r#"const t = document.querySelector('.tile[data-lot-id="{id}"] .tile-tags');
            return [t.hidden, t.querySelector('.lane').hidden ? null : t.querySelector('.lane').textContent,
                    t.querySelector('.reserve').hidden ? null : t.querySelector('.reserve').textContent];"#
        )
    };
    browser
        .goto(&format!("{}/display", fake.url()))
        .await
        .unwrap();
    browser.wait_for(layouts[0].1, WAIT).await.unwrap();
    for (id, expected) in [
        (
            "lane-1",
            json!([false, "Lane A · #1", "\u{2714} Reserve met"]),
        ),
        (
            "lane-2",
            json!([
                false,
                "Lane lane-B-long-name · #12",
                "\u{2715} Reserve not met"
            ]),
        ),
        ("lane-4", json!([false, null, "\u{2714} Reserve met"])),
        ("lane-5", json!([true, null, null])),
    ] {
        let shown = browser.execute(&tags(id), json!([])).await.unwrap();
        assert_eq!(shown, expected, "tile {id}");
    }
    for (layout, ready) in layouts {
        browser.viewport(1280, 720).await.unwrap();
        browser
            .goto(&format!("{}/display?layout={layout}", fake.url()))
            .await
            .unwrap();
        browser.wait_for(ready, WAIT).await.unwrap();
        for (w, h) in [(1280, 720), (1920, 1080), (3840, 2160)] {
            browser.viewport(w, h).await.unwrap();
            let problems = browser.execute_async(LAYOUT_PROBLEMS).await.unwrap();
            assert_eq!(problems, json!([]), "layout {layout} at {w}x{h}");
        }
    }
    // Rotation moves on to another open lot by itself.
    let first = browser
        .execute(
            "return document.querySelector('.single').dataset.lotId;",
            json!([]),
        )
        .await
        .unwrap();
    let first = first.as_str().unwrap();
    browser
        .wait_for(
            &format!(
                r#"const e = document.querySelector('.single[data-seq]');
                return e && e.dataset.lotId !== "{first}";"#
            ),
            WAIT,
        )
        .await
        .unwrap();
    browser.close().await;
}

#[tokio::test]
async fn settled_lots_leave_the_board_on_the_master_clock() {
    let fake = FakeTerminal::start(floor()).await.unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&format!("{}/display", fake.url()))
        .await
        .unwrap();
    browser
        .wait_for(
            r#"return document.body.dataset.connection === "live"
                && document.querySelectorAll('.tile[data-seq]').length === 9;"#,
            WAIT,
        )
        .await
        .unwrap();
    // Settled and withdrawn lots leave the board 30 s after they settled; the closed
    // one (not settled yet) and the open ones stay. The master's clock moves on:
    let later = Utc::now() + chrono::Duration::seconds(45);
    fake.send(
        "heartbeat",
        None,
        &json!({"epoch": "e1", "head": 30, "at": later.to_rfc3339()}),
    );
    let left = browser
        .wait_for(
            r#"const ids = [...document.querySelectorAll('.tile[data-seq]')].map((t) => t.dataset.lotId);
            return ids.length === 6 && ids;"#,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        left,
        json!(["lane-1", "lane-2", "lane-3", "lane-4", "lane-5", "lane-6"])
    );
    browser.close().await;
}

#[tokio::test]
async fn money_countdowns_and_lot_checks_in_the_browser() {
    let fake = FakeTerminal::start(floor()).await.unwrap();
    let browser = Browser::start(1280, 720).await.unwrap();
    browser
        .goto(&format!("{}/display", fake.url()))
        .await
        .unwrap();
    // The page's own module, in the browser's JavaScript engine.
    let rules = browser
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            import("/display/format.js").then((f) => {
              const lot = (o) => Object.assign({id: "a", title: "t", currency: "EUR",
                starting_price: 100, increment: 5, current_price: 100, bid_count: 0,
                leading_bidder: null, status: "open", starts_at: "2026-01-01T10:00:00Z",
                ends_at: "2026-01-01T11:00:00Z", updated_at: "2026-01-01T10:00:00Z",
                seq: 1, recent_bids: []}, o);
              done([
                f.money(123456789, "EUR"), f.money(1250, "EUR"), f.money(100000, "JPY"),
                f.money(900719925474099, "EUR"),
                f.nextBid(lot({})), f.nextBid(lot({bid_count: 2, current_price: 150})),
                f.countdown(3723000), f.countdown(59001), f.countdown(-5),
                f.checkLot(lot({})) !== null,
                f.checkLot(lot({current_price: 1.5})), f.checkLot(lot({id: "a b"})),
                f.checkLot(lot({status: "lost"})), f.checkLot(lot({seq: -1})),
                f.checkLot(lot({ends_at: "soon"})), f.checkLot(lot({currency: "eur"})),
                f.checkLot(lot({reserve_met: "yes"})), f.checkLot(lot({lane: "a b"})),
                f.checkLot(lot({run_order: -1})),
                f.reserve(f.checkLot(lot({}))), f.reserve(f.checkLot(lot({reserve_met: false}))).key,
                f.laneText(f.checkLot(lot({lane: "C", run_order: 4}))),
                f.laneText(f.checkLot(lot({lane: "C"}))),
              ]);
            });"#,
        )
        .await
        .unwrap();
    assert_eq!(
        rules,
        json!([
            "€1,234,567.89",
            "€12.50",
            "¥100,000",
            "€9,007,199,254,740.99",
            100,
            155,
            "1:02:03",
            "1:00",
            "0:00",
            true,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            "not-met",
            "Lane C · #4",
            "Lane C"
        ])
    );

    browser.close().await;
}
