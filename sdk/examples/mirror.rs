//! Mirror a master and print every update.
//!
//! ```text
//! cargo run -p mock-master -- --demo --simulate-bidders 5 --terminal-token term
//! cargo run -p lotsync --example mirror -- http://127.0.0.1:8080 term
//! ```

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let token = args.next().ok_or("usage: mirror URL TERMINAL_TOKEN")?;
    let client = lotsync::Client::builder(url).token(token).build()?;
    let mut display = client.subscribe();
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => {
                let m = client.metrics();
                println!(
                    "-- {} lots at seq {} | notices {} fetches {} coalesced {} | notice-to-mirror p50 {:?} p99 {:?}",
                    client.mirror().len(), client.mirror().seq(), m.notices, m.fetches,
                    m.coalesced_notices, m.notice_to_mirror.p50, m.notice_to_mirror.p99
                );
            }
            update = display.recv() => match update {
                Some(lotsync::Update::LotChanged { lot, previous_version, skipped, .. }) => println!(
                    "{:<10} {:<36} {:>12} {:<9} v{} (was {previous_version:?}, skipped {skipped})",
                    lot.id, lot.title, lot.current_price, lot.status, lot.seq
                ),
                Some(lotsync::Update::State(state)) => println!("-- {state}"),
                Some(other) => println!("-- {}", match other {
                    lotsync::Update::Snapshot { lots, .. } => format!("snapshot of {} lots", lots.len()),
                    lotsync::Update::Resynced { lots, epoch_changed, .. } => format!("resynced {} lots (new history: {epoch_changed})", lots.len()),
                    _ => String::new(),
                }),
                None => break,
            },
        }
    }
    client.shutdown().await;
    Ok(())
}
