//! Bad input to the master, generated: property tests send hundreds of malformed
//! requests per kind (truncated and malformed JSON, wrong types, missing and unknown
//! fields, out-of-range and overflowing amounts, huge bodies, ids with path separators,
//! control characters, 10,000 characters or SQL metacharacters, invalid status
//! transitions, bad query parameters and fault settings) through the router in-process.
//!
//! Every one must get a 4xx with `{"error": {"code", "message", "field"?}}` naming the
//! field at fault where there is one, and change nothing: the head sequence, every lot in
//! the replica and the fault settings are compared before and after each request.
//!
//! Cases per property: `PROPTEST_CASES` (default 300). The generator is deterministic, so
//! a failure replays; proptest prints the smallest failing input it found.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{Method, StatusCode};
use common::*;
use lotsync::protocol::{LotStatus, MAX_MONEY};
use mock_master::AppState;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A master with one lot in every status (`lot-open`, `lot-closed`, ...), in memory.
struct Fixture {
    rt: Runtime,
    state: AppState,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = rt.block_on(async {
            let state = AppState::open(config()).unwrap();
            let store = &state.store;
            for status in LotStatus::ALL {
                let id = format!("lot-{status}");
                let mut input = open_lot(&format!("A {status} car"));
                if status == LotStatus::Scheduled {
                    input.status = Some(LotStatus::Scheduled);
                    input.starts_at = chrono::Utc::now() + chrono::Duration::hours(1);
                    input.ends_at = input.starts_at + chrono::Duration::hours(1);
                }
                store.put_lot(&id, input).await.unwrap();
                let path: &[LotStatus] = match status {
                    LotStatus::Closed => &[LotStatus::Closed],
                    LotStatus::Sold => &[LotStatus::Closed, LotStatus::Sold],
                    LotStatus::Passed => &[LotStatus::Closed, LotStatus::Passed],
                    LotStatus::Withdrawn => &[LotStatus::Withdrawn],
                    _ => &[],
                };
                for next in path {
                    store.set_status(&id, *next).await.unwrap();
                }
            }
            store
                .place_bid("alice", "lot-open", 100_000, None)
                .await
                .unwrap();
            replicated(&state, state.store.log_tail().head()).await;
            state
        });
        Fixture { rt, state }
    }

    /// Head, every replica lot and the fault settings: what must not change.
    fn snapshot(&self) -> (u64, Value, String) {
        self.rt.block_on(async {
            let head = self.state.store.log_tail().head();
            let (_, lots, _) = self.state.store.replica_lots(None).await.unwrap();
            (
                head,
                serde_json::to_value(lots).unwrap(),
                format!("{:?}", self.state.chaos.settings()),
            )
        })
    }

    /// Send a request that must be refused: a 4xx, an error body, `field` named when
    /// given (`Some(None)` means any field or none), and nothing changed.
    fn refused(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&str>,
        field: Option<Option<&str>>,
    ) -> Result<Value, TestCaseError> {
        let before = self.snapshot();
        let (status, _, json) = self.rt.block_on(call(
            &self.state,
            method.clone(),
            uri,
            Some(token),
            body,
            &[],
        ));
        let shown = |b: Option<&str>| b.map(|b| b.chars().take(200).collect::<String>());
        prop_assert!(
            status.is_client_error(),
            "{method} {uri} {:?}: {status} {json}",
            shown(body)
        );
        let error = &json["error"];
        prop_assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty())
                && error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {uri}: error body {json}"
        );
        if let Some(Some(field)) = field {
            prop_assert_eq!(
                error["field"].as_str(),
                Some(field),
                "{} {} {:?}: {}",
                method,
                uri,
                shown(body),
                json
            );
        }
        prop_assert_eq!(before, self.snapshot(), "{} {} changed state", method, uri);
        Ok(json)
    }

    fn run<S: Strategy>(
        &self,
        name: &str,
        strategy: S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let config = Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let tried = AtomicU64::new(0);
        let result = runner.run(&strategy, |value| {
            tried.fetch_add(1, Ordering::Relaxed);
            test(value)
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
        eprintln!(
            "bad input | {name}: {} cases passed",
            tried.load(Ordering::Relaxed)
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.rt.block_on(self.state.store.shutdown());
    }
}

/// Amounts outside 1..=MAX_MONEY that still fit an i64.
fn bad_amount() -> impl Strategy<Value = i64> {
    prop_oneof![i64::MIN..=0, (MAX_MONEY + 1)..=i64::MAX]
}

/// JSON values of every type but an integer.
fn not_an_integer() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        "[^\"\\\\]{0,20}".prop_map(Value::from),
        (-1e12f64..1e12)
            .prop_filter("not whole", |f| f.fract() != 0.0)
            .prop_map(Value::from),
        Just(json!([1, 2])),
        Just(json!({"amount": 5})),
    ]
}

/// Strings that are not lot ids: path separators, dots, control characters, SQL
/// metacharacters, non-ASCII, and ids up to 10,000 characters.
fn bad_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,5}[/\\\\][a-z]{0,5}",
        Just("..".to_owned()),
        "[a-z]{1,5}[\\x00-\\x1f\\x7f][a-z]{0,5}",
        "[a-z]{0,3}['\";%*()=<>][a-z ]{0,10}",
        Just("1' OR '1'='1".to_owned()),
        Just("x'; DROP TABLE lots; --".to_owned()),
        "[a-z]{0,3}[é€日😀 ][a-z]{0,3}",
        (65usize..=10_000).prop_map(|n| "a".repeat(n)),
    ]
    .prop_filter("not a valid id", |id| {
        !id.is_empty() && lotsync::protocol::validate_lot_id(id).is_err()
    })
}

/// Percent-encode every byte that is not alphanumeric, so the id reaches the handler.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn lot_json() -> Value {
    serde_json::to_value(open_lot("Saab 9-3")).unwrap()
}

#[test]
fn malformed_bid_bodies_are_refused() {
    let fx = Fixture::new();
    let uri = "/v1/lots/lot-open/bids";
    let valid = r#"{"amount":150000}"#;
    fx.run("truncated bid JSON", 0..valid.len(), |cut| {
        fx.refused(Method::POST, uri, ALICE, Some(&valid[..cut]), None)?;
        Ok(())
    });
    fx.run("amounts out of range", bad_amount(), |amount| {
        let body = json!({ "amount": amount }).to_string();
        fx.refused(Method::POST, uri, ALICE, Some(&body), Some(Some("amount")))?;
        Ok(())
    });
    fx.run("overflowing amounts", "[1-9][0-9]{19,40}", |digits| {
        let body = format!(r#"{{"amount":{digits}}}"#);
        fx.refused(Method::POST, uri, ALICE, Some(&body), Some(Some("amount")))?;
        Ok(())
    });
    fx.run("amounts below the next bid", 1i64..105_000, |amount| {
        let body = json!({ "amount": amount }).to_string();
        let json = fx.refused(Method::POST, uri, ALICE, Some(&body), Some(Some("amount")))?;
        prop_assert_eq!(json["error"]["code"].as_str(), Some("bid_too_low"));
        Ok(())
    });
    fx.run("amounts of the wrong type", not_an_integer(), |amount| {
        let body = json!({ "amount": amount }).to_string();
        fx.refused(Method::POST, uri, ALICE, Some(&body), Some(Some("amount")))?;
        Ok(())
    });
    fx.run("unknown fields", "[a-z_]{1,12}", |name| {
        let body = if name == "amount" {
            "{}".to_owned()
        } else {
            json!({ "amount": 150000, name.clone(): 1 }).to_string()
        };
        let field = if name == "amount" { "amount" } else { &name };
        fx.refused(Method::POST, uri, ALICE, Some(&body), Some(Some(field)))?;
        Ok(())
    });
    fx.run(
        "random bytes",
        proptest::collection::vec(any::<u8>(), 0..300),
        |bytes| {
            let body = String::from_utf8_lossy(&bytes).into_owned();
            fx.refused(Method::POST, uri, ALICE, Some(&body), Some(None))?;
            Ok(())
        },
    );
    fx.run(
        "bodies over 64 KiB",
        64 * 1024 + 1..1024 * 1024usize,
        |size| {
            let body = format!(r#"{{"amount":150000,"pad":"{}"}}"#, "x".repeat(size));
            let json = fx.refused(Method::POST, uri, ALICE, Some(&body), None)?;
            prop_assert_eq!(json["error"]["code"].as_str(), Some("payload_too_large"));
            Ok(())
        },
    );
}

#[test]
fn bad_lot_ids_are_refused_on_every_route() {
    let fx = Fixture::new();
    let routes: [(Method, &str, &str, Option<String>); 4] = [
        (Method::PUT, "", ADMIN, Some(lot_json().to_string())),
        (Method::GET, "", TERMINAL, None),
        (
            Method::POST,
            "/bids",
            ALICE,
            Some(r#"{"amount":150000}"#.into()),
        ),
        (
            Method::POST,
            "/status",
            ADMIN,
            Some(r#"{"status":"closed"}"#.into()),
        ),
    ];
    fx.run("bad lot ids", (bad_id(), 0..routes.len()), |(id, route)| {
        let (method, suffix, token, body) = &routes[route];
        let uri = format!("/v1/lots/{}{suffix}", encode(&id));
        fx.refused(
            method.clone(),
            &uri,
            token,
            body.as_deref(),
            Some(Some("id")),
        )?;
        Ok(())
    });
    fx.run("bad ids in a batch fetch", bad_id(), |id| {
        let uri = format!("/v1/lots?ids=lot-open,{}", encode(&id));
        fx.refused(Method::GET, &uri, TERMINAL, None, Some(Some("ids")))?;
        Ok(())
    });
}

/// One way to break a valid lot body, and the field the error must name.
fn broken_lot() -> impl Strategy<Value = (Value, String)> {
    let set = |field: &'static str, value: Value| {
        let mut lot = lot_json();
        lot[field] = value;
        (lot, field.to_owned())
    };
    let money_fields = prop_oneof![
        Just("starting_price"),
        Just("increment"),
        Just("reserve_price")
    ];
    prop_oneof![
        (money_fields.clone(), bad_amount()).prop_map(move |(f, a)| set(f, a.into())),
        (
            money_fields,
            not_an_integer().prop_filter("null is no reserve", |v| !v.is_null())
        )
            .prop_map(move |(f, v)| set(f, v)),
        prop_oneof![
            Just(String::new()),
            " {1,5}".prop_map(String::from),
            "[a-z]{1,5}[\\x00-\\x08\\x0b-\\x1f\\x7f][a-z]{0,5}",
            (201usize..2_000).prop_map(|n| "t".repeat(n)),
        ]
        .prop_map(move |t| set("title", t.into())),
        "[a-z]{3}|[A-Z]{1,2}|[A-Z]{4,6}|[A-Z]{2}[0-9'%;]"
            .prop_map(move |c| set("currency", c.into())),
        "[a-z ]{1,10}|2026-13-01T00:00:00Z|[0-9]{1,8}"
            .prop_map(move |t| set("starts_at", t.into())),
        "[a-z]{1,10}|\\{\\}|\\[\\]".prop_map(move |s| set("status", s.into())),
        (1i64..100_000).prop_map(|secs| {
            let mut lot = lot_json();
            let starts: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(lot["starts_at"].clone()).unwrap();
            lot["ends_at"] = json!(starts - chrono::Duration::seconds(secs));
            (lot, "ends_at".to_owned())
        }),
        prop_oneof![
            Just("title"),
            Just("currency"),
            Just("starting_price"),
            Just("increment"),
            Just("starts_at"),
            Just("ends_at"),
        ]
        .prop_map(|field| {
            let mut lot = lot_json();
            lot.as_object_mut().unwrap().remove(field);
            (lot, field.to_owned())
        }),
        "[a-z]{1,8}"
            .prop_filter("not a field", |f| lot_json().get(f).is_none()
                && !["attributes", "reserve_price", "status"].contains(&f.as_str()))
            .prop_map(|f| {
                let mut lot = lot_json();
                lot[f.as_str()] = json!(1);
                (lot, f)
            }),
        // Attribute keys with SQL metacharacters, capitals or too long; values of the
        // wrong type or too long; too many attributes.
        "[a-z]{0,3}['\";%A-Z -][a-z]{0,3}|[a-z]{33,40}".prop_map(|key| {
            let mut lot = lot_json();
            lot["attributes"] = json!({ key.clone(): "x" });
            (lot, format!("attributes.{key}"))
        }),
        prop_oneof![
            Just(json!(1.5)),
            Just(json!(null)),
            Just(json!([1])),
            Just(json!({"a": 1})),
            (201usize..1000).prop_map(|n| json!("v".repeat(n))),
            Just(json!("bad\u{7}bell")),
        ]
        .prop_map(|value| {
            let mut lot = lot_json();
            lot["attributes"] = json!({ "colour": value });
            (lot, "attributes.colour".to_owned())
        }),
        (33usize..60).prop_map(|n| {
            let mut lot = lot_json();
            lot["attributes"] = (0..n).map(|i| (format!("k{i}"), json!(i))).collect();
            (lot, "attributes".to_owned())
        }),
    ]
}

#[test]
fn broken_lot_bodies_name_the_field() {
    let fx = Fixture::new();
    fx.run(
        "broken lot bodies",
        (broken_lot(), any::<bool>()),
        |((lot, field), replace)| {
            // Both a new lot and a replacement of an existing one.
            let uri = if replace {
                "/v1/lots/lot-open"
            } else {
                "/v1/lots/new-lot"
            };
            let body = lot.to_string();
            let json = fx.refused(Method::PUT, uri, ADMIN, Some(&body), None)?;
            let named = json["error"]["field"].as_str().unwrap_or_default();
            // serde names a nested path (`attributes.colour`) or the top field; an
            // attribute key with odd characters is named escaped; a list given as the
            // increment is a ladder, whose bad band is named (`increment[0]`).
            prop_assert!(
                named == field
                    || field.starts_with(&format!("{named}."))
                    || (field == "increment" && named.starts_with("increment["))
                    || (field.starts_with("attributes.") && named.starts_with("attributes.")),
                "{field} expected, {json}"
            );
            Ok(())
        },
    );
}

#[test]
fn invalid_status_transitions_are_conflicts() {
    let fx = Fixture::new();
    let pairs: Vec<(LotStatus, LotStatus)> = LotStatus::ALL
        .into_iter()
        .flat_map(|from| LotStatus::ALL.into_iter().map(move |to| (from, to)))
        .filter(|(from, to)| !from.can_become(*to))
        .collect();
    fx.run("invalid transitions", 0..pairs.len(), |i| {
        let (from, to) = pairs[i];
        let uri = format!("/v1/lots/lot-{from}/status");
        let body = json!({ "status": to }).to_string();
        let json = fx.refused(Method::POST, &uri, ADMIN, Some(&body), Some(Some("status")))?;
        prop_assert_eq!(json["error"]["code"].as_str(), Some("invalid_transition"));
        // A replace that would move the status the same wrong way.
        if from != to {
            let mut lot = lot_json();
            lot["status"] = json!(to);
            let uri = format!("/v1/lots/lot-{from}");
            fx.refused(
                Method::PUT,
                &uri,
                ADMIN,
                Some(&lot.to_string()),
                Some(Some("status")),
            )?;
        }
        Ok(())
    });
    fx.run("unknown statuses", "[a-zA-Z_ ]{0,12}", |status| {
        let body = json!({ "status": status }).to_string();
        fx.refused(
            Method::POST,
            "/v1/lots/lot-open/status",
            ADMIN,
            Some(&body),
            Some(Some("status")),
        )?;
        Ok(())
    });
}

#[test]
fn bad_queries_and_fault_settings_are_refused() {
    let fx = Fixture::new();
    let not_a_count = prop_oneof![
        "-[0-9]{1,5}",
        "[a-z]{1,5}",
        "[0-9]{21,30}",
        "[0-9]{1,3}\\.[0-9]",
        Just("%00".to_owned()),
    ];
    let routes = [
        ("/v1/lots/lot-open?min_seq=", "min_seq"),
        ("/v1/lots?min_seq=", "min_seq"),
        ("/v1/changes?after=", "after"),
        ("/v1/changes?limit=", "limit"),
    ];
    fx.run(
        "bad query numbers",
        (not_a_count, 0..routes.len()),
        |(value, r)| {
            let (prefix, field) = routes[r];
            let uri = format!("{prefix}{value}");
            fx.refused(Method::GET, &uri, TERMINAL, None, Some(Some(field)))?;
            Ok(())
        },
    );
    // Found by schemathesis: a sequence beyond the head used to wait, then 503.
    let head = fx.state.store.log_tail().head();
    let beyond = (head + 1..=u64::MAX, 0..2usize);
    fx.run("min_seq beyond the head", beyond, |(seq, r)| {
        let uri = [
            format!("/v1/lots/lot-open?min_seq={seq}"),
            format!("/v1/lots?ids=lot-open&min_seq={seq}"),
        ][r]
            .clone();
        fx.refused(Method::GET, &uri, TERMINAL, None, Some(Some("min_seq")))?;
        Ok(())
    });
    let rate_field = prop_oneof![Just("notice_drop_rate"), Just("fetch_error_rate")];
    let bad_rate = prop_oneof![
        (1.000_001f64..1e9).prop_map(Value::from),
        (-1e9f64..-1e-9).prop_map(Value::from),
        Just(json!("half")),
        Just(json!(true)),
    ];
    fx.run(
        "bad fault rates",
        (rate_field, bad_rate),
        |(field, rate)| {
            let body = json!({ field: rate }).to_string();
            fx.refused(
                Method::POST,
                "/v1/chaos",
                ADMIN,
                Some(&body),
                Some(Some(field)),
            )?;
            Ok(())
        },
    );
    let ms_field = prop_oneof![Just("replica_lag_ms"), Just("fetch_delay_ms")];
    let bad_ms = prop_oneof![
        (i64::MIN..0).prop_map(Value::from),
        // Longer than a minute would outlive the patch that turns it off.
        (60_001u64..=u64::MAX).prop_map(Value::from),
        (-1e6f64..1e6)
            .prop_filter("fraction", |f| f.fract() != 0.0)
            .prop_map(Value::from),
        Just(json!("10ms")),
    ];
    fx.run("bad fault delays", (ms_field, bad_ms), |(field, ms)| {
        let body = json!({ field: ms, "pause_replicator": true }).to_string();
        fx.refused(
            Method::POST,
            "/v1/chaos",
            ADMIN,
            Some(&body),
            Some(Some(field)),
        )?;
        Ok(())
    });
    if let Err(e) = fx.refused(
        Method::GET,
        "/v1/lots?ids=",
        TERMINAL,
        None,
        Some(Some("ids")),
    ) {
        panic!("an empty id list: {e}");
    }
}

#[test]
fn sql_metacharacters_in_titles_and_values_are_stored_verbatim() {
    let fx = Fixture::new();
    let text =
        "[a-zA-Z0-9 ]{0,5}(['\";%_*=()<>-]|--|/\\*|\\*/|OR 1=1|DROP TABLE lots){1,4}[a-z ]{0,5}";
    fx.run(
        "SQL metacharacters stored verbatim",
        (text, text),
        |(title, value)| {
            prop_assume!(!title.trim().is_empty() && !value.trim().is_empty());
            let mut lot = lot_json();
            lot["title"] = json!(title);
            lot["attributes"] = json!({ "note": value });
            let (status, _, stored) = fx.rt.block_on(call(
                &fx.state,
                Method::PUT,
                "/v1/lots/sql-lot",
                Some(ADMIN),
                Some(&lot.to_string()),
                &[],
            ));
            prop_assert!(
                status == StatusCode::CREATED || status == StatusCode::OK,
                "{status} {stored}"
            );
            prop_assert_eq!(&stored["title"], &json!(title));
            prop_assert_eq!(&stored["attributes"]["note"], &json!(value));
            let lots = fx.rt.block_on(async {
                replicated(&fx.state, fx.state.store.log_tail().head()).await;
                fx.state.store.replica_lots(None).await.unwrap().1
            });
            // Every other lot is still there, untouched.
            prop_assert_eq!(lots.len(), LotStatus::ALL.len() + 1);
            let copy = lots.iter().find(|l| l.id == "sql-lot").unwrap();
            prop_assert_eq!(&copy.title, &title);
            Ok(())
        },
    );
}
