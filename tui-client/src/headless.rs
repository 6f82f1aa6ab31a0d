//! `--headless`: every update as one JSON line on stdout, for logs, scripts and QA.
//!
//! Lines look like `{"type":"snapshot","lots":[...]}`, `{"type":"lot","lot":{...},
//! "previous_version":7,"skipped":0}`, `{"type":"resynced","lots":[...],
//! "epoch_changed":false}` and `{"type":"state","state":"live"}`. Each line is flushed
//! as it is written; nothing else is ever printed on stdout.

use std::future::Future;
use std::io::{ErrorKind, Write};

use std::sync::Arc;

use lotsync::protocol::Lot;
use lotsync::{ConnectionState, Update};
use serde_json::{Value, json};

/// Write updates from `client` until `shutdown` completes or the client closes.
pub async fn run(
    client: &lotsync::Client,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut updates = client.subscribe();
    tokio::pin!(shutdown);
    loop {
        let update = tokio::select! {
            () = &mut shutdown => return Ok(()),
            update = updates.recv() => update,
        };
        let Some(update) = update else { return Ok(()) };
        let mut line = serde_json::to_vec(&to_json(&update))?;
        line.push(b'\n');
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(&line).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): that is a normal way to stop.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The JSON form of one update.
pub fn to_json(update: &Update) -> Value {
    match update {
        Update::Snapshot { lots, epoch } => {
            json!({"type": "snapshot", "lots": plain(lots), "epoch": epoch.as_deref()})
        }
        Update::LotChanged {
            lot,
            epoch,
            previous_version,
            skipped,
        } => json!({
            "type": "lot",
            "lot": &**lot,
            "epoch": &**epoch,
            "previous_version": previous_version,
            "skipped": skipped,
        }),
        Update::Resynced {
            lots,
            epoch,
            epoch_changed,
        } => {
            json!({"type": "resynced", "lots": plain(lots), "epoch": &**epoch, "epoch_changed": epoch_changed})
        }
        Update::State(state) => state_json(*state),
    }
}

/// The lots behind their `Arc`s (serde's `rc` feature is off in the workspace).
fn plain(lots: &[Arc<Lot>]) -> Vec<&Lot> {
    lots.iter().map(|lot| &**lot).collect()
}

fn state_json(state: ConnectionState) -> Value {
    match state {
        ConnectionState::Connecting => json!({"type": "state", "state": "connecting"}),
        ConnectionState::Syncing => json!({"type": "state", "state": "syncing"}),
        ConnectionState::Live => json!({"type": "state", "state": "live"}),
        ConnectionState::Reconnecting { attempt, since } => json!({
            "type": "state",
            "state": "reconnecting",
            "attempt": attempt,
            "down_ms": since.elapsed().as_millis() as u64,
        }),
        ConnectionState::Stale { since } => json!({
            "type": "state",
            "state": "stale",
            "down_ms": since.elapsed().as_millis() as u64,
        }),
        ConnectionState::Degraded { since } => json!({
            "type": "state",
            "state": "degraded",
            "failing_ms": since.elapsed().as_millis() as u64,
        }),
        ConnectionState::Failed => json!({"type": "state", "state": "failed"}),
        ConnectionState::Closed => json!({"type": "state", "state": "closed"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_have_a_type_and_their_fields() {
        let lot = Arc::new(Lot::example("lot-1"));
        let line = to_json(&Update::LotChanged {
            lot: lot.clone(),
            epoch: Arc::from("e1"),
            previous_version: Some(3),
            skipped: 1,
        });
        assert_eq!(line["type"], "lot");
        assert_eq!(line["lot"]["id"], "lot-1");
        assert_eq!(line["previous_version"], 3);
        assert_eq!(line["skipped"], 1);
        assert_eq!(line["epoch"], "e1");
        assert_eq!(
            to_json(&Update::Snapshot {
                lots: vec![lot],
                epoch: None
            })["lots"][0]["id"],
            "lot-1"
        );
        assert_eq!(
            to_json(&Update::State(ConnectionState::Live)),
            json!({"type": "state", "state": "live"})
        );
        let down = ConnectionState::Reconnecting {
            attempt: 2,
            since: std::time::Instant::now(),
        };
        assert_eq!(to_json(&Update::State(down))["attempt"], 2);
    }
}
