//! The OpenAPI 3.0 documents served at `/openapi.json`: the master's whole API, and
//! the terminal half a terminal server serves (plus bids, which it forwards).
//!
//! Hand-maintained next to the routers; tests check that every route a router serves
//! is documented and that nothing documented is missing from it.

use serde_json::{Value, json};

/// Every route the master serves, as (method, path).
pub const MASTER_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("put", "/v1/lots/{id}"),
    ("get", "/v1/lots/{id}"),
    ("post", "/v1/lots/{id}/status"),
    ("post", "/v1/lots/{id}/bids"),
    ("get", "/v1/lots"),
    ("get", "/v1/changes"),
    ("get", "/v1/notices"),
    ("get", "/v1/replication"),
    ("get", "/v1/chaos"),
    ("post", "/v1/chaos"),
];

/// Every route a terminal server serves, as (method, path).
pub const TERMINAL_SERVER_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/lots/{id}"),
    ("post", "/v1/lots/{id}/bids"),
    ("get", "/v1/lots"),
    ("get", "/v1/changes"),
    ("get", "/v1/notices"),
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(name: &str) -> Value {
    json!({"content": {"application/json": {"schema": schema_ref(name)}}})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref("ErrorBody")}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema)}}})
}

fn param(name: &str, location: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": schema, "description": description})
}

fn lot_id() -> Value {
    param(
        "id",
        "path",
        true,
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}),
        "Lot id",
    )
}

fn min_seq() -> Value {
    param(
        "min_seq",
        "query",
        false,
        json!({"type": "integer", "minimum": 0}),
        "Smallest version acceptable; waits for the replica, then 503",
    )
}

fn secured(role: &str, mut op: Value) -> Value {
    op["security"] = json!([{ "bearer": [] }]);
    op["x-role"] = json!(role);
    let responses = op["responses"].as_object_mut().expect("responses");
    responses.insert("401".into(), error("Missing or unknown token"));
    responses.insert("403".into(), error("Token of another role"));
    op
}

fn money() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": crate::protocol::MAX_MONEY})
}

fn schemas() -> Value {
    let status = json!({"type": "string", "enum": ["scheduled", "open", "closed", "sold", "passed", "withdrawn"]});
    let time = json!({"type": "string", "format": "date-time"});
    let seq = json!({"type": "integer", "format": "int64", "minimum": 0});
    let attributes = json!({"type": "object", "maxProperties": 32,
        "additionalProperties": {"oneOf": [{"type": "string", "maxLength": 200}, {"type": "integer"}, {"type": "boolean"}]}});
    json!({
        "Bid": {"type": "object", "required": ["lot_id", "bidder", "amount", "seq", "at"], "properties": {
            "lot_id": {"type": "string"}, "bidder": {"type": "string"}, "amount": money(), "seq": seq, "at": time}},
        "Lot": {"type": "object", "required": ["id", "title", "attributes", "currency", "starting_price", "increment",
            "reserve_price", "current_price", "bid_count", "leading_bidder", "status", "starts_at", "ends_at", "seq",
            "updated_at", "recent_bids"], "properties": {
            "id": {"type": "string"}, "title": {"type": "string"}, "attributes": attributes,
            "currency": {"type": "string"}, "starting_price": money(), "increment": money(),
            "reserve_price": {"type": "integer", "nullable": true}, "current_price": money(),
            "bid_count": {"type": "integer", "minimum": 0}, "leading_bidder": {"type": "string", "nullable": true},
            "status": status, "starts_at": time, "ends_at": time, "seq": seq, "updated_at": time,
            "recent_bids": {"type": "array", "maxItems": 10, "items": schema_ref("Bid")}}},
        "LotInput": {"type": "object", "additionalProperties": false,
            "required": ["title", "currency", "starting_price", "increment", "starts_at", "ends_at"], "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200}, "attributes": attributes,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "starting_price": money(), "increment": money(),
            "reserve_price": {"allOf": [money()], "nullable": true}, "status": status,
            "starts_at": time, "ends_at": time}},
        "StatusChange": {"type": "object", "additionalProperties": false, "required": ["status"],
            "properties": {"status": status}},
        "BidRequest": {"type": "object", "additionalProperties": false, "required": ["amount"],
            "properties": {"amount": money()}},
        "LotsResponse": {"type": "object", "required": ["epoch", "seq", "lots", "missing"], "properties": {
            "epoch": {"type": "string"}, "seq": seq, "lots": {"type": "array", "items": schema_ref("Lot")},
            "missing": {"type": "array", "items": {"type": "string"}}}},
        "Notice": {"type": "object", "required": ["seq", "lot_id", "kind", "at"], "properties": {
            "seq": seq, "lot_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["upsert", "status", "bid"]}, "at": time}},
        "ChangesResponse": {"type": "object", "required": ["epoch", "head", "changes"], "properties": {
            "epoch": {"type": "string"}, "head": seq, "changes": {"type": "array", "items": schema_ref("Notice")}}},
        "ReplicationStatus": {"type": "object",
            "required": ["epoch", "primary_head", "replica_applied", "lag_ops", "lag_ms"], "properties": {
            "epoch": {"type": "string"}, "primary_head": seq, "replica_applied": seq,
            "lag_ops": {"type": "integer", "minimum": 0}, "lag_ms": {"type": "integer", "minimum": 0}}},
        "ChaosPatch": {"type": "object", "additionalProperties": false, "properties": {
            "replica_lag_ms": {"type": "integer", "minimum": 0, "maximum": crate::protocol::MAX_FAULT_DELAY_MS},
            "replica_lag_random": {"type": "boolean"},
            "notice_drop_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "fetch_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "fetch_delay_ms": {"type": "integer", "minimum": 0, "maximum": crate::protocol::MAX_FAULT_DELAY_MS},
            "cut_streams": {"type": "boolean"},
            "pause_replicator": {"type": "boolean"},
            "pause_publisher": {"type": "boolean"}}},
        "ChaosSettings": {"type": "object", "required": ["replica_lag_ms", "replica_lag_random", "notice_drop_rate",
            "fetch_error_rate", "fetch_delay_ms", "pause_replicator"], "properties": {
            "replica_lag_ms": {"type": "integer"}, "replica_lag_random": {"type": "boolean"},
            "notice_drop_rate": {"type": "number"}, "fetch_error_rate": {"type": "number"},
            "fetch_delay_ms": {"type": "integer"}, "pause_replicator": {"type": "boolean"},
            "pause_publisher": {"type": "boolean"}}},
        "ErrorBody": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"},
            "min_next_bid": {"type": "integer"}, "status": status}}}}
    })
}

/// The master's document.
pub fn master_document() -> Value {
    let paths = json!({
        "/healthz": {"get": {"summary": "Readiness: 503 names what is down (the master's databases, writer, replicator; a terminal server before its first snapshot)", "operationId": "healthz",
            "responses": {"200": {"description": "Serving", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": {"description": "Not serving; the body says why", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/v1/lots/{id}": {
            "put": secured("admin", json!({"summary": "Create or replace a lot (price state is kept)", "operationId": "putLot",
                "parameters": [lot_id()], "requestBody": {"required": true, "content": json_body("LotInput")["content"]},
                "responses": {"200": ok("Replaced", "Lot"), "201": ok("Created", "Lot"), "400": error("Invalid id or body"),
                    "409": error("invalid_transition"), "413": error("Body over 64 KiB")}})),
            "get": secured("terminal", json!({"summary": "One lot from the replica", "operationId": "getLot",
                "parameters": [lot_id(), min_seq(), param("If-None-Match", "header", false, json!({"type": "string"}), "ETag seen")],
                "responses": {"200": ok("The lot; ETag is its seq", "Lot"), "304": {"description": "Not modified"},
                    "400": error("Invalid id or query"), "404": error("No such lot"), "500": error("Injected failure"),
                    "503": error("replica_behind; see Retry-After")}}))
        },
        "/v1/lots/{id}/status": {"post": secured("admin", json!({"summary": "Change the status only",
            "operationId": "setStatus", "parameters": [lot_id()],
            "requestBody": {"required": true, "content": json_body("StatusChange")["content"]},
            "responses": {"200": ok("The lot", "Lot"), "400": error("Invalid body"), "404": error("No such lot"),
                "409": error("invalid_transition"), "413": error("Body over 64 KiB")}}))},
        "/v1/lots/{id}/bids": {"post": secured("bidder", json!({"summary": "Place a bid as the authenticated bidder",
            "operationId": "placeBid", "parameters": [lot_id(), param("Idempotency-Key", "header", false,
                json!({"type": "string", "minLength": 1, "maxLength": 128}), "Retries with the same key and body are not placed twice")],
            "requestBody": {"required": true, "content": json_body("BidRequest")["content"]},
            "responses": {"201": ok("Accepted (or replayed)", "Bid"), "400": error("Invalid body or key"),
                "404": error("No such lot"), "409": error("bid_too_low, lot_not_open or idempotency_conflict"),
                "413": error("Body over 64 KiB")}}))},
        "/v1/lots": {"get": secured("terminal", json!({"summary": "Batch fetch (ids) or snapshot of every lot",
            "operationId": "getLots", "parameters": [
                param("ids", "query", false, json!({"type": "string"}), "Comma-separated lot ids, at most 500"), min_seq()],
            "responses": {"200": ok("Lots consistent as of seq", "LotsResponse"), "400": error("Invalid query"),
                "500": error("Injected failure"), "503": error("replica_behind; see Retry-After")}}))},
        "/v1/changes": {"get": secured("terminal", json!({"summary": "Log entries after a sequence",
            "operationId": "getChanges", "parameters": [
                param("after", "query", false, json!({"type": "integer", "minimum": 0}), "Last sequence seen"),
                param("limit", "query", false, json!({"type": "integer", "minimum": 1, "maximum": 10000}), "Most entries")],
            "responses": {"200": ok("Entries in order, no gaps", "ChangesResponse"), "400": error("Invalid query"),
                "410": error("history_truncated: resynchronise")}}))},
        "/v1/notices": {"get": secured("terminal", json!({"summary": "Notice stream (Server-Sent Events)",
            "description": "Events: hello (first), notice (id = seq), heartbeat (head), reset (resume point unavailable).",
            "operationId": "notices", "parameters": [
                param("Last-Event-ID", "header", false, json!({"type": "string"}), "Resume after this sequence"),
                param("after", "query", false, json!({"type": "integer", "minimum": 0}), "Resume point if no header"),
                param("epoch", "query", false, json!({"type": "string"}), "Epoch the resume point belongs to"),
                param("lots", "query", false, json!({"type": "string", "enum": ["inline"]}), "inline: each notice carries its lot")],
            "responses": {"200": {"description": "text/event-stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "400": error("Invalid resume point"),
                "503": error("overloaded: too many open streams; see Retry-After")}}))},
        "/v1/replication": {"get": secured("terminal", json!({"summary": "Replication status",
            "operationId": "replication", "responses": {"200": ok("Head, applied, lag", "ReplicationStatus")}}))},
        "/v1/chaos": {
            "get": secured("admin", json!({"summary": "Active faults", "operationId": "getChaos",
                "responses": {"200": ok("Settings", "ChaosSettings"), "404": error("chaos_disabled")}})),
            "post": secured("admin", json!({"summary": "Change faults; omitted fields keep their values",
                "operationId": "patchChaos", "requestBody": {"required": true, "content": json_body("ChaosPatch")["content"]},
                "responses": {"200": ok("Settings", "ChaosSettings"), "400": error("Invalid field"),
                    "404": error("chaos_disabled"), "413": error("Body over 64 KiB")}}))
        }
    });
    json!({
        "openapi": "3.0.3",
        "info": {"title": "lotsync master", "version": env!("CARGO_PKG_VERSION"),
            "description": "Notify, then fetch: notices over SSE, lots from the replica. Money is integer minor units."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        }
    })
}

/// A terminal server's document: the master's, cut to the routes it serves.
pub fn terminal_server_document() -> Value {
    let mut doc = master_document();
    doc["info"]["title"] = json!("lotsync terminal server");
    doc["info"]["description"] = json!(
        "The terminal half of the lotsync protocol, served from a terminal server's mirror; bids are forwarded upstream as they are."
    );
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.retain(|path, ops| {
            if let Some(ops) = ops.as_object_mut() {
                ops.retain(|method, _| {
                    TERMINAL_SERVER_ROUTES.contains(&(method.as_str(), path.as_str()))
                });
            }
            ops.as_object().is_some_and(|ops| !ops.is_empty())
        });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented(doc: &Value) -> Vec<(String, String)> {
        let mut routes: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        routes.sort();
        routes
    }

    fn table(routes: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut table: Vec<(String, String)> = routes
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        table.sort();
        table
    }

    #[test]
    fn documented_routes_match_the_route_tables() {
        assert_eq!(documented(&master_document()), table(MASTER_ROUTES));
        assert_eq!(
            documented(&terminal_server_document()),
            table(TERMINAL_SERVER_ROUTES)
        );
    }
}
