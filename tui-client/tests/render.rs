//! Snapshot tests of every screen, drawn on ratatui's TestBackend.

mod common;

use std::sync::Arc;

use lotsync::protocol::Lot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tui_client::app::{Action, App, Link, Options};
use tui_client::bid::BidOutcome;

use common::{at, now};

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .unwrap();
    terminal
}

#[test]
fn dashboard() {
    let app = common::app(Options::default());
    insta::assert_snapshot!(draw(&app, 80, 20).backend());
}

#[test]
fn dashboard_stale_keeps_the_data_and_says_so() {
    let mut app = common::app(Options::default());
    app.update(
        now(),
        Action::Link(Link::Reconnecting {
            attempt: 3,
            since: at(-12),
        }),
    );
    insta::assert_snapshot!(draw(&app, 80, 20).backend());
}

#[test]
fn detail_with_bids() {
    let mut app = common::bidder();
    app.update(now(), Action::CycleSort); // by id: A-101 first
    app.update(now(), Action::Top); // the selection follows its lot; pick the first row
    app.stats.changed(at(-1));
    app.stats.drawn(now());
    insta::assert_snapshot!(draw(&app, 120, 32).backend());
}

#[test]
fn floor() {
    let app = common::app(Options {
        floor: true,
        ..Options::default()
    });
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn floor_pinned_on_a_small_screen() {
    let app = common::app(Options {
        floor: true,
        pinned: Some("A-101".into()),
        ..Options::default()
    });
    insta::assert_snapshot!(draw(&app, 50, 14).backend());
}

#[test]
fn help() {
    let mut app = common::app(Options::default());
    app.update(now(), Action::ToggleHelp);
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn bid_box_with_error() {
    let mut app = common::bidder();
    app.update(now(), Action::OpenBidBox);
    app.update(now(), Action::PlaceBid);
    app.update(
        now(),
        Action::BidResult {
            lot_id: "A-105".into(),
            amount: 7_310_000,
            outcome: BidOutcome::TooLow {
                min_next_bid: 7_410_000,
            },
        },
    );
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn tiny_terminal() {
    let app = common::app(Options::default());
    insta::assert_snapshot!(draw(&app, 40, 10).backend());
}

#[test]
fn long_titles_are_cut_with_an_ellipsis() {
    let mut app = common::app(Options::default());
    let mut lot = Lot::clone(&common::lots()[0]);
    lot.title = "2017 Volvo V90 D4 Momentum Business Advanced Edition with panoramic roof, tow bar, winter tyres and a very long story".into();
    lot.id = "LONG-ID-THAT-GOES-ON-AND-ON-FOREVER".into();
    lot.seq += 1;
    app.selected = Some(lot.id.clone());
    app.update(
        now(),
        Action::LotChanged {
            lot: Arc::new(lot),
            skipped: 0,
        },
    );
    insta::assert_snapshot!(draw(&app, 110, 24).backend());
}

#[test]
fn every_screen_survives_every_small_size() {
    let mut apps = vec![
        common::app(Options::default()),
        common::app(Options {
            floor: true,
            ..Options::default()
        }),
    ];
    let mut help = common::app(Options::default());
    help.update(now(), Action::ToggleHelp);
    let mut bid = common::bidder();
    bid.update(now(), Action::OpenBidBox);
    let mut empty = App::new(Options::default(), now());
    empty.update(now(), Action::StartFilter);
    apps.extend([help, bid, empty]);
    for app in &apps {
        for width in 0..=60 {
            for height in 0..=16 {
                draw(app, width, height);
            }
        }
    }
}

/// Lanes, reserves and the bidder's own standing: columns that appear only when some
/// lot has them, and the detail pane with the bidder's own maximum.
#[test]
fn dashboard_with_lanes_reserves_and_your_bids() {
    let mut app = common::bidder();
    let lanes = ["A", "B", "A", "B", "A"];
    let mut lots: Vec<Lot> = common::lots().iter().map(|l| (**l).clone()).collect();
    for (i, lot) in lots.iter_mut().enumerate() {
        lot.lane = Some(lanes[i].into());
        lot.run_order = Some(i as u32 + 1);
        lot.reserve_met = [Some(true), Some(false), None, Some(true), Some(false)][i];
    }
    lots[0].leading_bidder = Some("you".into());
    app.update(
        now(),
        Action::Snapshot(lots.into_iter().map(Arc::new).collect()),
    );
    for (id, leading) in [("A-101", true), ("A-105", false)] {
        app.update(
            now(),
            Action::BidResult {
                lot_id: id.into(),
                amount: 9_000_000,
                outcome: BidOutcome::Standing {
                    bidder: "you".into(),
                    leading,
                    current_price: 9_000_000,
                    max_amount: Some(9_500_000),
                },
            },
        );
    }
    app.update(now(), Action::CycleSort);
    app.update(now(), Action::Top);
    insta::assert_snapshot!(draw(&app, 140, 24).backend());
}
