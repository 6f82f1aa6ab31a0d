//! Demo: a catalogue of used cars run in four sequential lanes (A–D: one live lot per
//! lane, the next opening a few seconds after the previous settles), with a realistic
//! increment ladder; an auction driver that lists a fresh round with new ids whenever
//! everything is settled, so it runs forever; and bot bidders that bid, or leave
//! maximums, through the same store path as HTTP bids.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use lotsync::protocol::{
    BidRequest, IncrementBand, Ladder, LaneSettings, LotInput, LotStatus, Money,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::server::AppState;

/// Lots per round.
pub const ROUND_SIZE: usize = 36;
/// The demo's lanes; lots are dealt to them in turn, so each runs a ninth of a round.
pub const LANES: [&str; 4] = ["A", "B", "C", "D"];
/// Lots opening together: the first lot of every lane.
const WAVE: usize = LANES.len();
/// Planned time between a lane's lots (a lot opens later if the one before it has not
/// settled yet, plus [`LANE_GAP_MS`]).
const WAVE_GAP_SECS: i64 = 75;
/// Pause between a lot settling and the next lot of its lane opening.
pub const LANE_GAP_MS: u64 = 5_000;

/// (make, model, price of a new one in euros)
const MODELS: &[(&str, &str, i64)] = &[
    ("Volvo", "V70 D4", 42_000),
    ("Volvo", "XC60 B5", 55_000),
    ("Volkswagen", "Golf 1.5 TSI", 30_000),
    ("Volkswagen", "Passat Variant", 38_000),
    ("Volkswagen", "Polo 1.0", 19_000),
    ("BMW", "320d Touring", 48_000),
    ("BMW", "X3 xDrive20d", 58_000),
    ("Audi", "A4 Avant 2.0 TDI", 46_000),
    ("Audi", "A3 Sportback", 33_000),
    ("Mercedes-Benz", "C 200 Estate", 49_000),
    ("Mercedes-Benz", "E 220 d", 60_000),
    ("Toyota", "Corolla Hybrid", 29_000),
    ("Toyota", "RAV4 Hybrid", 41_000),
    ("Skoda", "Octavia Combi", 30_000),
    ("Skoda", "Superb 2.0 TDI", 40_000),
    ("Ford", "Focus 1.0 EcoBoost", 24_000),
    ("Peugeot", "308 SW", 27_000),
    ("Renault", "Clio TCe", 18_000),
    ("Tesla", "Model 3", 45_000),
    ("Kia", "Niro EV", 39_000),
    ("Hyundai", "i30 Wagon", 25_000),
    ("Saab", "9-3 Aero", 36_000),
    ("Mazda", "CX-5 2.5", 37_000),
    ("Porsche", "Macan S", 85_000),
];
const COLOURS: &[&str] = &[
    "black",
    "white",
    "silver",
    "grey",
    "dark blue",
    "red",
    "green",
    "beige",
];
const BOT_NAMES: &[&str] = &[
    "anna", "ben", "carla", "dirk", "elin", "farid", "greta", "hugo", "ines", "jonas", "karin",
    "lars",
];

fn rng(state: &AppState, salt: u64) -> StdRng {
    match state.config.seed {
        Some(seed) => StdRng::seed_from_u64(seed.wrapping_add(salt)),
        None => StdRng::from_os_rng(),
    }
}

/// The demo's increment ladder, in cents, as European used-car auctions run it:
/// 100 € steps under 5,000 €, 250 € to 15,000 €, 500 € to 40,000 €, 1,000 € above.
pub fn demo_ladder() -> Ladder {
    Ladder::new(
        [
            (0, 10_000),
            (500_000, 25_000),
            (1_500_000, 50_000),
            (4_000_000, 100_000),
        ]
        .into_iter()
        .map(|(from, step)| IncrementBand { from, step })
        .collect(),
    )
}

/// Bid step for a price, in cents: the step of [`demo_ladder`]'s band.
pub fn increment_for(price: Money) -> Money {
    demo_ladder().step_at(price)
}

/// One round of the catalogue: `(id, lot)` pairs, waves of four opening every 75 s,
/// the first wave open now.
pub fn catalogue(round: u64, now: DateTime<Utc>, rng: &mut impl Rng) -> Vec<(String, LotInput)> {
    (0..ROUND_SIZE)
        .map(|i| {
            let (make, model, new_price) = *MODELS.choose(rng).expect("models");
            let year = now.year() - rng.random_range(1..=12);
            let age = i64::from(now.year() - year);
            let mileage_km = age * rng.random_range(9_000..=22_000);
            let fuel = match make {
                "Tesla" => "electric",
                "Kia" => "electric",
                "Toyota" => "hybrid",
                _ => *["petrol", "diesel"].choose(rng).expect("fuels"),
            };
            let gearbox = if rng.random_bool(0.7) {
                "automatic"
            } else {
                "manual"
            };
            let value = (new_price as f64 * 0.85f64.powi(age as i32)) as i64;
            let start_euros = (value * 6 / 10 / 100).max(5) * 100;
            let starting_price = start_euros * 100;
            let wave = (i / WAVE) as i64;
            let starts_at = now + chrono::Duration::seconds(wave * WAVE_GAP_SECS);
            let ends_at = starts_at + chrono::Duration::seconds(rng.random_range(60..=240));
            let mut attributes = BTreeMap::new();
            attributes.insert("make".into(), make.into());
            attributes.insert("model".into(), model.into());
            attributes.insert("year".into(), year.into());
            attributes.insert("mileage_km".into(), mileage_km.into());
            attributes.insert("fuel".into(), fuel.into());
            attributes.insert("gearbox".into(), gearbox.into());
            attributes.insert(
                "colour".into(),
                (*COLOURS.choose(rng).expect("colours")).into(),
            );
            let slug: String = make
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase();
            let id = format!("r{round}-{:02}-{slug}", i + 1);
            let lane = LANES[i % LANES.len()];
            let input = LotInput {
                title: format!("{year} {make} {model}"),
                attributes,
                currency: "EUR".into(),
                starting_price,
                increment: demo_ladder(),
                reserve_price: rng.random_bool(0.4).then(|| starting_price / 100 * 130),
                status: Some(if wave == 0 {
                    LotStatus::Open
                } else {
                    LotStatus::Scheduled
                }),
                starts_at,
                ends_at,
                lane: Some(lane.to_owned()),
                run_order: Some(wave as u32 + 1),
            };
            (id, input)
        })
        .collect()
}

/// Keep an auction running until shutdown: list a round, wait until every lot of it
/// is settled, list the next.
pub async fn run_auction(state: AppState) {
    let mut rng = rng(&state, 0);
    let mut round = 1u64;
    for lane in LANES {
        let settings = LaneSettings {
            sequential: true,
            gap_ms: LANE_GAP_MS,
        };
        if let Err(e) = state.store.set_lane(lane, settings).await {
            tracing::warn!(error = %e, lane, "demo could not set up a lane");
        }
    }
    loop {
        let prefix = format!("r{round}-");
        let existing = state.store.primary_lots().await.unwrap_or_default();
        if !existing.iter().any(|l| l.id.starts_with(&prefix)) {
            for (id, input) in catalogue(round, Utc::now(), &mut rng) {
                if let Err(e) = state.store.put_lot(&id, input).await {
                    tracing::warn!(error = %e, %id, "demo could not list a lot");
                }
            }
            tracing::info!(round, lots = ROUND_SIZE, "demo round listed");
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = state.shutdown.cancelled() => return,
            }
            let lots = state.store.primary_lots().await.unwrap_or_default();
            let settled = lots
                .iter()
                .filter(|l| l.id.starts_with(&prefix))
                .all(|l| l.status.is_final());
            if settled {
                break;
            }
        }
        round += 1;
    }
}

/// The name of bot number `index`, such as `bot-anna`.
pub fn bot_name(index: usize) -> String {
    let name = BOT_NAMES[index % BOT_NAMES.len()];
    match index / BOT_NAMES.len() {
        0 => format!("bot-{name}"),
        n => format!("bot-{name}{n}"),
    }
}

/// One bot bidder: about one bid every 1–4 s on a random open lot, faster and keener
/// on lots about to close; never outbids itself.
pub async fn run_bot(state: AppState, index: usize) {
    let name = bot_name(index);
    let mut rng = rng(&state, 1 + index as u64);
    let mut pause = Duration::from_millis(rng.random_range(1000..4000));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = state.shutdown.cancelled() => return,
        }
        pause = Duration::from_millis(rng.random_range(1000..4000));
        let Ok((_, lots, _)) = state.store.replica_lots(None).await else {
            continue;
        };
        let now = Utc::now();
        let open: Vec<_> = lots
            .iter()
            .filter(|l| l.status == LotStatus::Open && l.ends_at > now)
            .filter(|l| l.leading_bidder.as_deref() != Some(name.as_str()))
            .collect();
        let closing: Vec<_> = open
            .iter()
            .filter(|l| l.ends_at - now < chrono::Duration::seconds(20))
            .collect();
        let lot = if !closing.is_empty() && rng.random_bool(0.6) {
            pause = Duration::from_millis(rng.random_range(300..1500));
            **closing.choose(&mut rng).expect("not empty")
        } else if let Some(lot) = open.choose(&mut rng) {
            *lot
        } else {
            continue;
        };
        let amount = lot.min_next_bid() + lot.increment * rng.random_range(0..=2);
        // About one bid in four leaves a maximum instead, as online bidders do.
        let request = if rng.random_bool(0.25) {
            BidRequest::max(lot.min_next_bid() + lot.increment * rng.random_range(2..=8))
        } else {
            BidRequest::amount(amount)
        };
        match state.store.bid(&name, &lot.id, request, None).await {
            Ok(_) => tracing::debug!(bot = %name, lot = %lot.id, amount, "bot bid"),
            Err(e) => tracing::debug!(bot = %name, lot = %lot.id, error = %e, "bot bid rejected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_valid_and_staggered() {
        let now = Utc::now();
        let lots = catalogue(3, now, &mut StdRng::seed_from_u64(1));
        assert_eq!(lots.len(), ROUND_SIZE);
        for (id, input) in &lots {
            lotsync::protocol::validate_lot_id(id).unwrap();
            input.validate().unwrap();
            assert!(id.starts_with("r3-"));
        }
        let open = lots
            .iter()
            .filter(|(_, l)| l.status == Some(LotStatus::Open))
            .count();
        assert_eq!(open, WAVE);
        assert_eq!(bot_name(0), "bot-anna");
        assert_eq!(bot_name(BOT_NAMES.len()), "bot-anna1");
    }
}
