//! Bidding through a database outage: bidders that bid over HTTP and record every
//! answer, and a watcher of the master's `/healthz`.
//!
//! A bidder behaves as a careful client should: every bid carries an idempotency key,
//! and a bid answered 503 (or not answered at all) is asked again with the same key and
//! body until it gets a final answer. So a bid whose commit succeeded but whose answer
//! was lost is answered from the key, never placed twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lotsync::protocol::Bid;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The increment of the lots [`crate::lot_input`] creates.
const INCREMENT: i64 = 100;

/// Everything the bidders were answered, so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Every 201, in the order received, with the idempotency key it answered (a key
    /// answered twice, first placed and then replayed, appears twice).
    pub acked: Vec<(String, Bid, Instant)>,
    /// 201s marked `Idempotent-Replayed`.
    pub replayed: u64,
    /// 503 answers (each asked again with the same key).
    pub unavailable: u64,
    /// Requests that got no answer (connection refused or reset).
    pub unanswered: u64,
    /// 409 answers (outbid meanwhile): final, nothing placed.
    pub outbid: u64,
    /// Any other answer: status and body. Must stay empty.
    pub unexpected: Vec<(u16, String)>,
}

impl Tally {
    /// Distinct acknowledged bids by sequence (replays folded into their original).
    pub fn placed(&self) -> BTreeMap<u64, Bid> {
        self.acked
            .iter()
            .map(|(_, bid, _)| (bid.seq, bid.clone()))
            .collect()
    }

    /// Keys answered with two different bids: must be none.
    pub fn keys_answered_twice(&self) -> Vec<String> {
        let mut by_key: HashMap<&str, u64> = HashMap::new();
        let mut twice = Vec::new();
        for (key, bid, _) in &self.acked {
            if let Some(seq) = by_key.insert(key, bid.seq)
                && seq != bid.seq
            {
                twice.push(key.clone());
            }
        }
        twice
    }

    /// Acknowledgements received at or after `since`.
    pub fn acked_since(&self, since: Instant) -> usize {
        self.acked.iter().filter(|(_, _, at)| *at >= since).count()
    }
}

/// Bidders bidding on `lots` at a steady pace until stopped.
pub struct Bidding {
    tally: watch::Sender<Tally>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bidding {
    /// Start one task per `(name, token)`, each bidding every `every` on a random lot.
    pub fn start(url: &str, bidders: &[(&str, &str)], lots: &[String], every: Duration) -> Bidding {
        let tally = watch::Sender::new(Tally::default());
        let stop = CancellationToken::new();
        let tasks = bidders
            .iter()
            .enumerate()
            .map(|(n, (name, token))| {
                tokio::spawn(bid_loop(
                    url.to_owned(),
                    (name.to_string(), token.to_string()),
                    lots.to_vec(),
                    every,
                    n as u64,
                    tally.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Bidding { tally, stop, tasks }
    }

    /// The answers so far.
    pub fn tally(&self) -> Tally {
        self.tally.borrow().clone()
    }

    /// Wait until the tally satisfies `reached`; woken by every answer. Panics after
    /// `timeout` (a hang).
    pub async fn wait(&self, what: &str, timeout: Duration, reached: impl Fn(&Tally) -> bool) {
        let mut rx = self.tally.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|t| reached(t)))
            .await
            .unwrap_or_else(|_| {
                panic!("timed out waiting for {what}: {:?}", summary(&self.tally()))
            })
            .expect("the tally lives as long as the bidding");
    }

    /// Stop bidding (each bidder finishes the request it is in) and return the tally.
    pub async fn stop(self) -> Tally {
        self.stop.cancel();
        for task in self.tasks {
            task.await.expect("a bidder panicked");
        }
        self.tally.borrow().clone()
    }
}

/// The counts of a tally, for messages.
pub fn summary(t: &Tally) -> String {
    format!(
        "{} acknowledged ({} distinct, {} replayed), {} answered 503, {} unanswered, {} outbid, unexpected {:?}",
        t.acked.len(),
        t.placed().len(),
        t.replayed,
        t.unavailable,
        t.unanswered,
        t.outbid,
        t.unexpected
    )
}

async fn bid_loop(
    url: String,
    (name, token): (String, String),
    lots: Vec<String>,
    every: Duration,
    seed: u64,
    tally: watch::Sender<Tally>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_amount: HashMap<String, i64> = HashMap::new();
    let mut pending: Option<(String, i64, String)> = None;
    let mut tick = tokio::time::interval(every);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        let (lot, amount, key) = pending.take().unwrap_or_else(|| {
            let lot = lots[rng.random_range(0..lots.len())].clone();
            let amount = next_amount.get(&lot).copied().unwrap_or(10_000);
            n += 1;
            (lot, amount, format!("{name}-{n}"))
        });
        let answer = http
            .post(format!("{url}/v1/lots/{lot}/bids"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&serde_json::json!({ "amount": amount }))
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(_) => {
                tally.send_modify(|t| t.unanswered += 1);
                pending = Some((lot, amount, key));
                continue;
            }
        };
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body = response.text().await.unwrap_or_default();
        match status {
            201 => {
                let bid: Bid = serde_json::from_str(&body).expect("a 201 carries the bid");
                next_amount.insert(lot, bid.amount + INCREMENT);
                let at = Instant::now();
                tally.send_modify(|t| {
                    t.replayed += u64::from(replayed);
                    t.acked.push((key, bid, at));
                });
            }
            503 => {
                tally.send_modify(|t| t.unavailable += 1);
                pending = Some((lot, amount, key));
            }
            409 => {
                let min = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["min_next_bid"].as_i64());
                match min {
                    Some(min) => {
                        next_amount.insert(lot, min + rng.random_range(0..3) * INCREMENT);
                        tally.send_modify(|t| t.outbid += 1);
                    }
                    None => tally.send_modify(|t| t.unexpected.push((status, body))),
                }
            }
            _ => tally.send_modify(|t| t.unexpected.push((status, body))),
        }
    }
}

/// What `/healthz` answered, each change once: when, the status, and what was down.
pub type HealthLog = Vec<(Instant, u16, Vec<String>)>;

/// Asks `/healthz` every `every` and records each change of answer.
pub struct HealthWatch {
    log: watch::Sender<HealthLog>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HealthWatch {
    /// Start watching `url`'s `/healthz`.
    pub fn start(url: &str, every: Duration) -> HealthWatch {
        let log = watch::Sender::new(Vec::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (url, log, stop) = (url.to_owned(), log.clone(), stop.clone());
            async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("an HTTP client");
                let mut tick = tokio::time::interval(every);
                while !stop.is_cancelled() {
                    tick.tick().await;
                    let Ok(response) = http.get(format!("{url}/healthz")).send().await else {
                        continue;
                    };
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let down: Vec<String> = body["down"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    log.send_if_modified(|log| {
                        let changed = log
                            .last()
                            .is_none_or(|(_, s, d)| (*s, d) != (status, &down));
                        if changed {
                            log.push((Instant::now(), status, down));
                        }
                        changed
                    });
                }
            }
        });
        HealthWatch { log, stop, task }
    }

    /// Wait until the log of answers satisfies `reached`; woken by every change.
    /// Panics after `timeout` (a hang).
    pub async fn wait(&self, what: &str, timeout: Duration, reached: impl Fn(&HealthLog) -> bool) {
        let mut rx = self.log.subscribe();
        let found = tokio::time::timeout(timeout, rx.wait_for(|log| reached(log))).await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "timed out waiting for /healthz to say {what}: {:?}",
            self.log
                .borrow()
                .iter()
                .map(|(_, s, d)| (s, d))
                .collect::<Vec<_>>()
        );
    }

    /// Stop watching and return the log.
    pub async fn stop(self) -> HealthLog {
        self.stop.cancel();
        let _ = self.task.await;
        self.log.borrow().clone()
    }
}
