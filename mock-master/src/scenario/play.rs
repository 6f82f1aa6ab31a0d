//! Playing a checked [`Scenario`]: each action at its offset, logged with its outcome,
//! and [`run`], which serves a master while the scenario plays.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use lotsync::protocol::{BidRequest, Ladder, Money};
use tokio::net::TcpListener;

use super::{Action, Amount, OnEnd, Report, Scenario};
use crate::config::MasterConfig;
use crate::server::{self, AppState};
use crate::store::StoreError;

impl Scenario {
    /// Play every action at its offset from now, on `state`'s store. Stops early when
    /// the master shuts down. With `on_end = "exit"` it then shuts the master down.
    pub async fn play(&self, state: &AppState) -> Result<Report, StoreError> {
        let start = tokio::time::Instant::now();
        let started_at = Utc::now();
        let mut report = Report::default();
        // Minimum next bid of each lot, as this player last saw it, and its ladder.
        let mut min_next: HashMap<String, (Money, Ladder)> = HashMap::new();
        tracing::info!(scenario = %self.origin, name = ?self.name, seed = self.seed,
            actions = self.plan.len(), "scenario starts");
        for (n, step) in self.plan.iter().enumerate() {
            let due = start + Duration::from_millis(step.at_ms as u64);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = state.shutdown.cancelled() => {
                    tracing::info!(step = n, "master shutting down: scenario stopped");
                    return Ok(report);
                }
            }
            report.steps += 1;
            let (n, at_ms, line) = (n, step.at_ms, step.line);
            match &step.action {
                Action::Lane(lane, settings) => match state.store.set_lane(lane, *settings).await {
                    Ok(lane) => {
                        tracing::info!(step = n, at_ms, line, lane = %lane.lane, sequential = lane.sequential, gap_ms = lane.gap_ms, "lane set")
                    }
                    Err(e) => Self::refused(&mut report, n, at_ms, line, "lane", e)?,
                },
                Action::Create(id, lot) => {
                    let mut input = lot.input.clone();
                    input.starts_at = started_at + chrono::Duration::milliseconds(lot.opens_in_ms);
                    input.ends_at =
                        input.starts_at + chrono::Duration::milliseconds(lot.duration_ms);
                    match state.store.put_lot(id, input).await {
                        Ok((stored, created)) => {
                            report.lots += 1;
                            min_next.insert(
                                id.clone(),
                                (stored.lot.min_next_bid(), lot.input.increment.clone()),
                            );
                            tracing::info!(step = n, at_ms, line, lot = %id, created, seq = stored.lot.seq, "lot stored");
                        }
                        Err(e) => Self::refused(&mut report, n, at_ms, line, "lot", e)?,
                    }
                }
                Action::Bid {
                    lot,
                    bidder,
                    amount,
                } => {
                    let (min, ladder) = min_next
                        .get(lot)
                        .cloned()
                        .unwrap_or_else(|| (1, Ladder::fixed(1)));
                    let request = match amount {
                        Amount::Fixed(a) => BidRequest::amount(*a),
                        Amount::Raise(k) => BidRequest::amount(
                            min.saturating_add(ladder.step_at(min).saturating_mul(i64::from(*k))),
                        ),
                        Amount::Max(request) => *request,
                    };
                    // Only the maximum's owner may see it: the log shows whether there is one.
                    let (amount, proxy) = (request.amount, request.max_amount.is_some());
                    match state.store.bid(bidder, lot, request, None).await {
                        Ok(outcome) => {
                            report.bids_accepted += 1;
                            // Proxies may have answered: the price is the receipt's.
                            let price = outcome.receipt.current_price;
                            min_next.insert(
                                lot.clone(),
                                (price.saturating_add(ladder.step_at(price)), ladder),
                            );
                            tracing::info!(step = n, at_ms, line, %lot, %bidder, ?amount, proxy, price, leading = outcome.receipt.leading, seq = outcome.receipt.bid.seq, "bid accepted");
                        }
                        Err(StoreError::BidTooLow { min_next_bid, .. }) => {
                            report.rejected += 1;
                            min_next.insert(lot.clone(), (min_next_bid, ladder));
                            tracing::warn!(step = n, at_ms, line, %lot, %bidder, ?amount, proxy, min_next_bid, "bid refused: too low");
                        }
                        Err(e) => Self::refused(&mut report, n, at_ms, line, "bid", e)?,
                    }
                }
                Action::Status(lot, to) => match state.store.set_status(lot, *to).await {
                    Ok(stored) => {
                        tracing::info!(step = n, at_ms, line, %lot, status = %to, seq = stored.lot.seq, "status changed")
                    }
                    Err(e) => Self::refused(&mut report, n, at_ms, line, "status change", e)?,
                },
                Action::Faults(patch) => {
                    if state.chaos.enabled() {
                        let settings = state
                            .chaos
                            .apply(patch)
                            .expect("rates were checked when the scenario was loaded");
                        state.store.log_tail().wake();
                        report.faults += 1;
                        tracing::info!(step = n, at_ms, line, ?settings, "faults switched");
                    } else {
                        tracing::warn!(
                            step = n,
                            at_ms,
                            line,
                            "faults skipped: fault injection is off"
                        );
                    }
                }
            }
        }
        tracing::info!(?report, on_end = ?self.on_end, "scenario finished");
        if self.on_end == OnEnd::Exit {
            state.shutdown.cancel();
        }
        Ok(report)
    }

    /// Log a refused action; a store that is shutting down or broken stops the play.
    fn refused(
        report: &mut Report,
        step: usize,
        at_ms: i64,
        line: usize,
        what: &str,
        error: StoreError,
    ) -> Result<(), StoreError> {
        match error {
            StoreError::Closed | StoreError::Corrupt(_) | StoreError::Io(_) => Err(error),
            StoreError::Database(ref e) if e.engine() == "sqlite" => Err(error),
            _ => {
                report.rejected += 1;
                tracing::warn!(step, at_ms, line, %error, "{what} refused");
                Ok(())
            }
        }
    }
}

/// Open a master for `config` (see [`Scenario::prepare`]), serve it on `listener`, and
/// play `scenario` until it ends (then keep serving or exit, as the file says) or
/// `shutdown` completes.
pub async fn run(
    mut config: MasterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    scenario: Scenario,
) -> Result<(), StoreError> {
    scenario.prepare(&mut config);
    let state = AppState::open(config)?;
    let player = {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = scenario.play(&state).await {
                tracing::error!(error = %e, "the scenario stopped: store failure");
                state.shutdown.cancel();
            }
        })
    };
    let served = server::serve(state, listener, shutdown).await;
    player.abort();
    served?;
    Ok(())
}
