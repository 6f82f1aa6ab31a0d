//! Key handling on the app state, without a terminal: keys go through the real key
//! map and `App::update`.

mod common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use lotsync::protocol::LotStatus;
use tui_client::app::{
    Action, App, Effect, Mode, Options, Overlay, Screen, SortMode, Standing, Tone,
};
use tui_client::bid::{BidOutcome, BidPhase};
use tui_client::keys::action_for;

use common::now;

/// Press keys in order; returns the effects they produced.
fn press(app: &mut App, keys: &[KeyCode]) -> Vec<Effect> {
    let mut effects = Vec::new();
    for code in keys {
        // The mode is read per key: a key can change which map the next one uses.
        if let Some(action) = action_for(KeyEvent::new(*code, KeyModifiers::NONE), app.mode()) {
            effects.extend(app.update(now(), action));
        }
    }
    effects
}

fn chars(text: &str) -> Vec<KeyCode> {
    text.chars().map(KeyCode::Char).collect()
}

fn ids(app: &App) -> Vec<String> {
    app.visible().iter().map(|lot| lot.id.clone()).collect()
}

fn selected(app: &App) -> String {
    app.selected_lot().unwrap().id.clone()
}

fn amount(app: &App) -> i64 {
    match &app.overlay {
        Overlay::Bid(bid) => bid.amount,
        other => panic!("no bid box: {other:?}"),
    }
}

#[test]
fn movement_wraps_with_arrows_and_clamps_with_pages() {
    let mut app = common::app(Default::default());
    assert_eq!(ids(&app), ["A-105", "A-101", "A-102", "A-103", "A-104"]);
    assert_eq!(selected(&app), "A-105");
    press(&mut app, &[KeyCode::Char('j'), KeyCode::Down]);
    assert_eq!(selected(&app), "A-102");
    press(&mut app, &[KeyCode::Char('k'), KeyCode::Up, KeyCode::Up]);
    assert_eq!(
        selected(&app),
        "A-104",
        "up from the top wraps to the bottom"
    );
    press(&mut app, &[KeyCode::Down]);
    assert_eq!(
        selected(&app),
        "A-105",
        "down from the bottom wraps to the top"
    );
    press(&mut app, &[KeyCode::PageDown, KeyCode::PageDown]);
    assert_eq!(selected(&app), "A-104");
    press(&mut app, &[KeyCode::PageUp]);
    assert_eq!(selected(&app), "A-105");
    press(&mut app, &[KeyCode::Char('G')]);
    assert_eq!(selected(&app), "A-104");
}

#[test]
fn selection_follows_its_lot_when_the_order_changes() {
    let mut app = common::app(Default::default());
    press(&mut app, &[KeyCode::Down]);
    assert_eq!(selected(&app), "A-101");
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortMode::Id);
    assert_eq!(selected(&app), "A-101");
}

#[test]
fn the_first_row_shown_is_a_real_selection_that_follows_its_lot() {
    let mut app = common::app(Default::default());
    let first = ids(&app)[0].clone();
    // Reordering puts another lot in the first row; the selection stays on the lot
    // that was shown selected, so the next key moves from there.
    press(&mut app, &[KeyCode::Char('s')]);
    assert_ne!(ids(&app)[0], first);
    assert_eq!(selected(&app), first);
}

#[test]
fn sort_cycles_through_every_order() {
    let mut app = common::app(Default::default());
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(ids(&app), ["A-101", "A-102", "A-103", "A-104", "A-105"]);
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortMode::Price);
    assert_eq!(ids(&app), ["A-105", "A-103", "A-101", "A-102", "A-104"]);
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortMode::MostBids);
    assert_eq!(ids(&app), ["A-101", "A-105", "A-104", "A-102", "A-103"]);
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortMode::Lane);
    press(&mut app, &[KeyCode::Char('s')]);
    assert_eq!(app.sort, SortMode::EndsSoonest);
}

#[test]
fn filter_types_keeps_and_clears() {
    let mut app = common::app(Default::default());
    press(&mut app, &[KeyCode::Char('/')]);
    assert_eq!(app.mode(), Mode::Filter);
    press(&mut app, &chars("VOLVOx"));
    assert!(ids(&app).is_empty());
    press(&mut app, &[KeyCode::Backspace, KeyCode::Enter]);
    assert_eq!(app.mode(), Mode::Dashboard);
    assert_eq!(ids(&app), ["A-101"], "matches the title case-insensitively");
    press(&mut app, &[KeyCode::Char('/')]);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.filter, "");
    assert_eq!(ids(&app).len(), 5);
    press(&mut app, &[KeyCode::Char('/')]);
    press(&mut app, &chars("electric"));
    assert_eq!(ids(&app), ["A-105"], "matches attributes too");
    assert!(
        press(&mut app, &[KeyCode::Char('q')]).is_empty(),
        "q is text while filtering"
    );
}

#[test]
fn help_floor_and_quit() {
    let mut app = common::app(Default::default());
    press(&mut app, &[KeyCode::Char('?')]);
    assert_eq!(app.mode(), Mode::Help);
    press(&mut app, &[KeyCode::Char('x')]);
    assert_eq!(app.mode(), Mode::Dashboard);
    press(&mut app, &[KeyCode::Char('f')]);
    assert_eq!(app.screen, Screen::Floor);
    assert_eq!(
        app.floor_lot().unwrap().id,
        "A-105",
        "follows the open lot closing soonest"
    );
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.screen, Screen::Dashboard);
    assert_eq!(press(&mut app, &[KeyCode::Char('q')]), [Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(
        app.update(now(), action_for(ctrl_c, app.mode()).unwrap()),
        Some(Effect::Quit)
    );
}

#[test]
fn bidding_needs_a_bidder_token() {
    let mut app = common::app(Default::default());
    press(&mut app, &[KeyCode::Char('b')]);
    assert_eq!(app.overlay, Overlay::None);
    let status = app.current_status().unwrap();
    assert_eq!(status.tone, Tone::Bad);
    assert!(status.text.contains("--bidder-token"), "{}", status.text);
}

#[test]
fn bid_box_prefills_and_steps_never_below_the_minimum() {
    let mut app = common::bidder();
    press(&mut app, &[KeyCode::Char('b')]);
    assert_eq!(app.mode(), Mode::BidBox);
    assert_eq!(
        amount(&app),
        7_310_000,
        "prefilled with the minimum next bid"
    );
    press(&mut app, &[KeyCode::Char('-'), KeyCode::Char('-')]);
    assert_eq!(amount(&app), 7_310_000);
    press(
        &mut app,
        &[KeyCode::Char('+'), KeyCode::Char('+'), KeyCode::Char('-')],
    );
    assert_eq!(amount(&app), 7_320_000);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn enter_places_the_bid_and_the_answer_shows_in_place() {
    let mut app = common::bidder();
    press(&mut app, &[KeyCode::Char('b'), KeyCode::Char('+')]);
    let effects = press(&mut app, &[KeyCode::Enter]);
    assert_eq!(
        effects,
        [Effect::PlaceBid {
            lot_id: "A-105".into(),
            amount: 7_320_000,
            max: false,
        }]
    );
    assert!(
        press(&mut app, &[KeyCode::Enter]).is_empty(),
        "no second bid while the first is in flight"
    );

    // Too low: the box stays, moves to the new minimum and says why.
    let too_low = BidOutcome::TooLow {
        min_next_bid: 7_500_000,
    };
    app.update(
        now(),
        Action::BidResult {
            lot_id: "A-105".into(),
            amount: 7_320_000,
            outcome: too_low,
        },
    );
    assert_eq!(amount(&app), 7_500_000);
    assert!(
        matches!(&app.overlay, Overlay::Bid(bid) if matches!(&bid.phase, BidPhase::Refused(why) if why.contains("EUR 75,000.00")))
    );
    assert!(app.current_status().unwrap().text.contains("too low"));

    // Accepted: the box closes and the status line says so.
    let effects = press(&mut app, &[KeyCode::Enter]);
    assert_eq!(
        effects,
        [Effect::PlaceBid {
            lot_id: "A-105".into(),
            amount: 7_500_000,
            max: false,
        }]
    );
    app.update(
        now(),
        Action::BidResult {
            lot_id: "A-105".into(),
            amount: 7_500_000,
            outcome: BidOutcome::Accepted,
        },
    );
    assert_eq!(app.overlay, Overlay::None);
    let status = app.current_status().unwrap();
    assert_eq!(
        (status.tone, status.text.as_str()),
        (Tone::Good, "Bid EUR 75,000.00 on A-105 accepted")
    );
}

#[test]
fn closed_lots_and_low_typed_amounts_are_refused_locally() {
    let mut app = common::bidder();
    press(&mut app, &[KeyCode::Char('b')]);
    press(&mut app, &chars("5"));
    assert_eq!(amount(&app), 500);
    assert!(press(&mut app, &[KeyCode::Enter]).is_empty());
    assert_eq!(amount(&app), 7_310_000, "offers the minimum after refusing");
    press(&mut app, &[KeyCode::Esc]);

    app.update(
        now(),
        Action::BidResult {
            lot_id: "A-105".into(),
            amount: 7_310_000,
            outcome: BidOutcome::NotOpen {
                status: LotStatus::Closed,
            },
        },
    );
    assert!(
        app.current_status()
            .unwrap()
            .text
            .contains("the lot is closed")
    );

    press(&mut app, &[KeyCode::Char('G'), KeyCode::Char('b')]);
    assert_eq!(selected(&app), "A-104");
    assert_eq!(app.overlay, Overlay::None, "A-104 is sold");
    assert!(app.current_status().unwrap().text.contains("not open"));
}

#[test]
fn changed_rows_flash_briefly_and_older_versions_are_ignored() {
    let mut app = common::app(Default::default());
    let mut lot = (*app.lots["A-102"]).clone();
    lot.seq += 5;
    lot.current_price = 1_600_000;
    lot.bid_count = 1;
    app.update(
        now(),
        Action::LotChanged {
            lot: lot.clone().into(),
            skipped: 2,
        },
    );
    assert!(app.is_flashing("A-102"));
    assert_eq!(app.history["A-102"].back(), Some(&1_600_000));
    app.update(common::at(2), Action::Tick);
    assert!(!app.is_flashing("A-102"));

    let mut older = lot.clone();
    older.seq -= 1;
    older.current_price = 1;
    app.update(
        common::at(3),
        Action::LotChanged {
            lot: older.into(),
            skipped: 0,
        },
    );
    assert_eq!(app.lots["A-102"].current_price, 1_600_000);
    assert!(!app.is_flashing("A-102"));
}

#[test]
fn resyncs_are_reported_except_the_first_load() {
    let mut app = App::new(Default::default(), now());
    app.update(now(), Action::Snapshot(Vec::new()));
    app.update(
        now(),
        Action::Resynced {
            lots: common::lots(),
            epoch_changed: false,
        },
    );
    assert!(app.current_status().is_none(), "the first load is not news");
    assert!(!app.animating(), "nor does it light up every row");

    let mut lots = common::lots();
    let mut changed = (*lots[1]).clone();
    changed.seq += 1;
    lots[1] = changed.into();
    app.update(
        common::at(5),
        Action::Resynced {
            lots,
            epoch_changed: true,
        },
    );
    assert!(
        app.current_status()
            .unwrap()
            .text
            .contains("history restarted")
    );
    assert!(
        app.is_flashing("A-102") && !app.is_flashing("A-101"),
        "only changed lots flash"
    );
}

#[test]
fn a_maximum_is_placed_and_the_bidder_sees_where_they_stand() {
    let mut app = common::bidder();
    press(
        &mut app,
        &[KeyCode::Char('b'), KeyCode::Char('m'), KeyCode::Char('+')],
    );
    let effects = press(&mut app, &[KeyCode::Enter]);
    assert_eq!(
        effects,
        [Effect::PlaceBid {
            lot_id: "A-105".into(),
            amount: 7_320_000,
            max: true,
        }]
    );
    app.update(
        now(),
        Action::BidResult {
            lot_id: "A-105".into(),
            amount: 7_320_000,
            outcome: BidOutcome::Standing {
                bidder: "me".into(),
                leading: true,
                current_price: 7_100_000,
                max_amount: Some(7_320_000),
            },
        },
    );
    assert_eq!(app.overlay, Overlay::None);
    assert_eq!(app.mine["A-105"].max_amount, Some(7_320_000));
    let lot = app.lots["A-105"].clone();
    // Until the lot itself says so, the lot's leader decides.
    let mut leading = (*lot).clone();
    leading.leading_bidder = Some("me".into());
    leading.seq += 1;
    app.update(
        now(),
        Action::LotChanged {
            lot: std::sync::Arc::new(leading.clone()),
            skipped: 0,
        },
    );
    assert_eq!(app.standing(&app.lots["A-105"]), Some(Standing::Leading));
    let mut outbid = leading;
    outbid.leading_bidder = Some("someone".into());
    outbid.seq += 1;
    app.update(
        now(),
        Action::LotChanged {
            lot: std::sync::Arc::new(outbid),
            skipped: 0,
        },
    );
    assert_eq!(app.standing(&app.lots["A-105"]), Some(Standing::Outbid));
    // A lot never bid on from here has no standing.
    let other = app.lots.values().find(|l| l.id != "A-105").unwrap().clone();
    assert_eq!(app.standing(&other), None);
}

#[test]
fn a_lane_limits_the_table_and_the_floor() {
    let mut app = common::app(Options::default());
    let ids: Vec<String> = app.lots.keys().cloned().collect();
    for (i, id) in ids.iter().enumerate() {
        let mut lot = (*app.lots[id]).clone();
        lot.lane = Some(if i % 2 == 0 { "A" } else { "B" }.into());
        lot.run_order = Some(i as u32);
        lot.seq += 100;
        app.update(
            now(),
            Action::LotChanged {
                lot: std::sync::Arc::new(lot),
                skipped: 0,
            },
        );
    }
    assert_eq!(app.lanes(), ["A", "B"]);
    press(&mut app, &[KeyCode::Char('l')]);
    assert_eq!(app.options.lane.as_deref(), Some("A"));
    assert!(!app.visible().is_empty());
    assert!(app.visible().iter().all(|l| l.lane.as_deref() == Some("A")));
    assert_eq!(app.floor_lot().unwrap().lane.as_deref(), Some("A"));
    press(&mut app, &[KeyCode::Char('l'), KeyCode::Char('l')]);
    assert_eq!(app.options.lane, None, "after the last lane: every lane");
    assert_eq!(app.visible().len(), app.lots.len());
}
