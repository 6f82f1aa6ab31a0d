//! Fixed lots and a fixed clock, so rendering and key tests are deterministic.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use lotsync::protocol::{Bid, Lot, LotStatus};
use serde_json::json;
use tui_client::app::{Action, App, Options};

/// 2026-01-01 10:30:00 UTC.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_263_400, 0).unwrap()
}

pub fn at(seconds_from_now: i64) -> DateTime<Utc> {
    now() + TimeDelta::seconds(seconds_from_now)
}

fn bids(id: &str, prices: &[i64]) -> Vec<Bid> {
    // Newest first, as the master sends them.
    prices
        .iter()
        .enumerate()
        .rev()
        .map(|(i, amount)| Bid {
            lot_id: id.to_owned(),
            bidder: format!("bidder-{}", i % 4 + 1),
            amount: *amount,
            seq: 100 + i as u64,
            at: at(-600 + 30 * i as i64),
            proxy: false,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn lot(
    id: &str,
    title: &str,
    status: LotStatus,
    start: i64,
    prices: &[i64],
    ends_in: i64,
    attrs: serde_json::Value,
) -> Arc<Lot> {
    let mut lot = Lot::example(id);
    lot.title = title.to_owned();
    lot.status = status;
    lot.starting_price = start;
    lot.increment = 10_000;
    lot.increment_ladder = lotsync::protocol::Ladder::fixed(10_000).bands().to_vec();
    lot.current_price = prices.last().copied().unwrap_or(start);
    lot.bid_count = prices.len() as u32;
    lot.recent_bids = bids(id, prices);
    lot.recent_bids.truncate(10);
    lot.leading_bidder = lot.recent_bids.first().map(|b| b.bidder.clone());
    lot.starts_at = at(-1_800);
    lot.ends_at = at(ends_in);
    if status == LotStatus::Scheduled {
        lot.starts_at = at(ends_in - 1_800);
    }
    lot.seq = 10 + id.len() as u64;
    lot.updated_at = at(-5);
    lot.attributes = serde_json::from_value(attrs).unwrap();
    Arc::new(lot)
}

pub fn lots() -> Vec<Arc<Lot>> {
    vec![
        lot(
            "A-101",
            "2017 Volvo V90 D4 Momentum",
            LotStatus::Open,
            2_000_000,
            &[
                2_000_000, 2_050_000, 2_100_000, 2_200_000, 2_250_000, 2_300_000, 2_345_000,
            ],
            245,
            json!({"make": "Volvo", "model": "V90", "year": 2017, "mileage_km": 84000, "fuel": "diesel", "gearbox": "automatic", "colour": "silver"}),
        ),
        lot(
            "A-102",
            "2015 Saab 9-3 Aero",
            LotStatus::Open,
            1_500_000,
            &[],
            1_200,
            json!({"make": "Saab", "year": 2015}),
        ),
        lot(
            "A-103",
            "2019 Tesla Model 3 Long Range",
            LotStatus::Scheduled,
            3_000_000,
            &[],
            3_600,
            json!({"make": "Tesla"}),
        ),
        lot(
            "A-104",
            "2012 BMW 320d Touring",
            LotStatus::Sold,
            800_000,
            &[800_000, 850_000],
            -600,
            json!({"make": "BMW"}),
        ),
        lot(
            "A-105",
            "2020 Porsche Taycan 4S",
            LotStatus::Open,
            7_000_000,
            &[7_000_000, 7_100_000, 7_150_000, 7_300_000],
            90,
            json!({"make": "Porsche", "fuel": "electric"}),
        ),
    ]
}

/// An app holding [`lots`], live, as of [`now`].
pub fn app(options: Options) -> App {
    let mut app = App::new(options, now());
    app.update(now(), Action::Snapshot(lots()));
    app.update(now(), Action::Link(tui_client::app::Link::Live));
    app.update(
        now(),
        Action::Metrics {
            seq: 4_321,
            notices: 1_000,
            mirror_p99: std::time::Duration::from_millis(3),
        },
    );
    app.update(
        at(1),
        Action::Metrics {
            seq: 4_330,
            notices: 1_012,
            mirror_p99: std::time::Duration::from_millis(3),
        },
    );
    app.update(now(), Action::Tick);
    app
}

pub fn bidder() -> App {
    app(Options {
        bidder: true,
        ..Options::default()
    })
}
