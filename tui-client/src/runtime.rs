//! The dashboard's event loop: keys, SDK updates, bid answers and a render tick,
//! all in one `select!`, feeding [`App::update`] and drawing when something changed.
//!
//! The terminal is restored on every way out: normal exit, error, and panic (the
//! panic hook installed by `ratatui::try_init` restores raw mode and the main screen
//! before the panic message prints).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use lotsync::protocol::{BidReceipt, BidRequest};
use lotsync::{BidError, Client, ConnectionState, Update};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::app::{Action, App, Effect, Link, Options};
use crate::bid::BidOutcome;
use crate::keys;

/// Render tick: fast enough for smooth highlights, slow enough to idle cheaply.
const TICK: Duration = Duration::from_millis(100);
/// How often the header's metrics are sampled.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Most updates applied before the screen is drawn again, so a burst is drawn once
/// but the keyboard never waits long.
const BATCH: usize = 512;

/// Run the dashboard until the user quits or `shutdown` completes.
pub async fn run(
    client: &Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(e) => {
            // Raw mode may already be on when entering the alternate screen failed.
            let _ = ratatui::try_restore();
            return Err(anyhow::Error::new(e).context("cannot set up the terminal"));
        }
    };
    let result = event_loop(&mut terminal, client, options, shutdown).await;
    let restored = ratatui::try_restore();
    // The loop's own error is the one worth reporting; a failed restore comes second.
    result?;
    restored.context("cannot restore the terminal")
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    client: &Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut app = App::new(options, Utc::now());
    let mut updates = client.subscribe();
    let mut updates_open = true;
    let mut events = EventStream::new();
    // Bid answers; at most one bid is in flight (the bid box waits for its answer).
    let (answers_tx, mut answers) = mpsc::channel::<Action>(8);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut metrics_at: Option<Instant> = None;
    let mut dirty = true;
    let mut drawn_second = 0;

    loop {
        if dirty {
            terminal.draw(|frame| frame.render_widget(&app, frame.area()))?;
            let now = Utc::now();
            app.stats.drawn(now);
            drawn_second = now.timestamp();
            dirty = false;
        }
        let mut actions = Vec::new();
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    let action = keys::action_for(key, app.mode());
                    tracing::debug!(?key, ?action, "key");
                    actions.extend(action);
                }
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            update = updates.recv(), if updates_open => match update {
                Some(update) => {
                    actions.push(action_of(update));
                    while actions.len() < BATCH {
                        let Some(more) = updates.try_recv() else { break };
                        actions.push(action_of(more));
                    }
                }
                None => {
                    updates_open = false;
                    actions.push(Action::Link(Link::Closed));
                }
            },
            Some(answer) = answers.recv() => actions.push(answer),
            _ = tick.tick() => {
                if metrics_at.is_none_or(|at| at.elapsed() >= METRICS_EVERY) {
                    metrics_at = Some(Instant::now());
                    let metrics = client.metrics();
                    actions.push(Action::Metrics {
                        seq: client.mirror().seq(),
                        notices: metrics.notices,
                        mirror_p99: metrics.notice_to_mirror.p99,
                    });
                }
                // Countdowns change every second; highlights fade in between.
                if app.animating() || Utc::now().timestamp() != drawn_second {
                    actions.push(Action::Tick);
                }
            }
        }
        for action in actions {
            dirty = true;
            match app.update(Utc::now(), action) {
                None => {}
                Some(Effect::Quit) => return Ok(()),
                Some(Effect::PlaceBid {
                    lot_id,
                    amount,
                    max,
                }) => {
                    let client = client.clone();
                    let answers = answers_tx.clone();
                    tokio::spawn(async move {
                        let request = if max {
                            BidRequest::max(amount)
                        } else {
                            BidRequest::amount(amount)
                        };
                        let outcome = match client.bid(&lot_id, request).await {
                            Ok(receipt) => standing(receipt),
                            Err(e) => outcome::<()>(Err(e)),
                        };
                        let _ = answers
                            .send(Action::BidResult {
                                lot_id,
                                amount,
                                outcome,
                            })
                            .await;
                    });
                }
            }
        }
    }
}

/// The action an SDK update means.
pub fn action_of(update: Update) -> Action {
    match update {
        Update::Snapshot { lots, .. } => Action::Snapshot(lots),
        Update::LotChanged { lot, skipped, .. } => Action::LotChanged { lot, skipped },
        Update::Resynced {
            lots,
            epoch_changed,
            ..
        } => Action::Resynced {
            lots,
            epoch_changed,
        },
        Update::State(state) => Action::Link(link_of(state)),
    }
}

/// The screen's view of a connection state: monotonic instants become wall-clock
/// times so the app state stays free of `Instant`.
pub fn link_of(state: ConnectionState) -> Link {
    let wall = |since: Instant| {
        Utc::now() - chrono::Duration::from_std(since.elapsed()).unwrap_or_default()
    };
    match state {
        ConnectionState::Connecting => Link::Connecting,
        ConnectionState::Syncing => Link::Syncing,
        ConnectionState::Live => Link::Live,
        ConnectionState::Reconnecting { attempt, since } => Link::Reconnecting {
            attempt,
            since: wall(since),
        },
        ConnectionState::Stale { since } => Link::Stale { since: wall(since) },
        ConnectionState::Degraded { since } => Link::Degraded { since: wall(since) },
        ConnectionState::Failed => Link::Failed,
        ConnectionState::Closed => Link::Closed,
    }
}

/// What a bid's result means for the bid box.
pub fn outcome<T>(result: Result<T, BidError>) -> BidOutcome {
    match result {
        Ok(_) => BidOutcome::Accepted,
        Err(BidError::TooLow { min_next_bid }) => BidOutcome::TooLow { min_next_bid },
        Err(BidError::MaxTooLow { min }) => BidOutcome::TooLow { min_next_bid: min },
        Err(BidError::NotOpen { status }) => BidOutcome::NotOpen { status },
        Err(BidError::UnknownLot) => BidOutcome::Failed("the lot does not exist".to_owned()),
        Err(other) => BidOutcome::Failed(other.to_string()),
    }
}

/// The outcome of an accepted bid or maximum: where the bidder stands.
pub fn standing(receipt: BidReceipt) -> BidOutcome {
    BidOutcome::Standing {
        bidder: receipt.bid.bidder,
        leading: receipt.leading,
        current_price: receipt.current_price,
        max_amount: receipt.max_amount,
    }
}

#[cfg(test)]
mod tests {
    use lotsync::protocol::LotStatus;

    use super::*;

    #[test]
    fn bid_errors_become_outcomes_the_box_can_act_on() {
        let ok: Result<(), BidError> = Ok(());
        assert_eq!(outcome(ok), BidOutcome::Accepted);
        let low = outcome::<()>(Err(BidError::TooLow {
            min_next_bid: 1_050,
        }));
        assert_eq!(
            low,
            BidOutcome::TooLow {
                min_next_bid: 1_050
            }
        );
        let closed = outcome::<()>(Err(BidError::NotOpen {
            status: LotStatus::Closed,
        }));
        assert_eq!(
            closed,
            BidOutcome::NotOpen {
                status: LotStatus::Closed
            }
        );
        let network = outcome::<()>(Err(BidError::Network("connection refused".into())));
        assert!(matches!(network, BidOutcome::Failed(why) if why.contains("connection refused")));
    }

    #[test]
    fn connection_states_keep_their_meaning_on_screen() {
        let since = Instant::now();
        assert_eq!(link_of(ConnectionState::Live), Link::Live);
        let down = link_of(ConnectionState::Reconnecting { attempt: 4, since });
        assert!(matches!(down, Link::Reconnecting { attempt: 4, .. }));
        assert!(!link_of(ConnectionState::Stale { since }).is_live());
        let degraded = link_of(ConnectionState::Degraded { since });
        assert!(!degraded.is_live(), "failing fetches are not live");
        assert!(degraded.label(Utc::now()).starts_with("DEGRADED"));
    }
}
