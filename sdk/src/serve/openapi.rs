//! The OpenAPI 3.0 documents served at `/openapi.json`: the master's whole API, and
//! the terminal half a terminal server serves (plus bids, which it forwards).
//!
//! The schemas are generated from the wire types in [`crate::protocol`] (their
//! `utoipa::ToSchema` derives, with the constrained fields' rules in
//! `protocol::schema`), so a field added to a type is in the document with it; a new
//! type needs only the derive and its name in `Components`. The operations refer to
//! the schemas through the types, and the route tables below are checked against the
//! routers by tests, so a route cannot be served undocumented or documented unserved.

use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::protocol::{
    AdminLot, ApiError, AuditAction, AuditEntry, AuditOrigin, Bid, BidReceipt, BidRequest,
    ChangesResponse, ChaosPatch, ChaosSettings, ErrorBody, IncrementBand, Lane, LaneSettings, Lot,
    LotInput, LotStatus, LotsResponse, MaxStatus, Notice, OpKind, ReplicationStatus, StatusChange,
};

/// Every route the master serves, as (method, path).
pub const MASTER_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("put", "/v1/lots/{id}"),
    ("get", "/v1/lots/{id}"),
    ("post", "/v1/lots/{id}/status"),
    ("post", "/v1/lots/{id}/bids"),
    ("get", "/v1/lots/{id}/bids"),
    ("get", "/v1/lots/{id}/max"),
    ("get", "/v1/admin/lots"),
    ("get", "/v1/admin/lots/{id}"),
    ("get", "/v1/lanes"),
    ("put", "/v1/lanes/{lane}"),
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
    ("get", "/v1/lots/{id}/max"),
    ("get", "/v1/lots"),
    ("get", "/v1/changes"),
    ("get", "/v1/notices"),
];

/// A reference to the generated schema of `T`.
fn schema_ref<T: ToSchema>() -> Value {
    json!({"$ref": format!("#/components/schemas/{}", T::name())})
}

fn json_body<T: ToSchema>() -> Value {
    json!({"content": {"application/json": {"schema": schema_ref::<T>()}}})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref::<ErrorBody>()}}})
}

fn ok<T: ToSchema>(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref::<T>()}}})
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

/// The components: every wire type's schema, generated from its derive.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    Lot,
    Bid,
    LotStatus,
    LotInput,
    StatusChange,
    BidRequest,
    LotsResponse,
    Notice,
    OpKind,
    ChangesResponse,
    ReplicationStatus,
    ChaosPatch,
    ChaosSettings,
    ErrorBody,
    ApiError,
    AdminLot,
    IncrementBand,
    BidReceipt,
    MaxStatus,
    AuditEntry,
    AuditAction,
    AuditOrigin,
    LaneSettings,
    Lane,
)))]
struct Components;

fn schemas() -> Value {
    let components = Components::openapi().components.unwrap_or_default();
    // A generated schema always serialises.
    serde_json::to_value(components.schemas).unwrap_or_default()
}

/// The master's document.
pub fn master_document() -> Value {
    let paths = json!({
        "/healthz": {"get": {"summary": "Readiness: 503 names what is down (the master's databases, writer, replicator, replication, JetStream publisher; a terminal server before its first snapshot)", "operationId": "healthz",
            "responses": {"200": {"description": "Serving", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": {"description": "Not serving; the body says why", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/v1/lots/{id}": {
            "put": secured("admin", json!({"summary": "Create or replace a lot (price state is kept)", "operationId": "putLot",
                "parameters": [lot_id()], "requestBody": {"required": true, "content": json_body::<LotInput>()["content"]},
                "responses": {"200": ok::<AdminLot>("Replaced"), "201": ok::<AdminLot>("Created"), "400": error("Invalid id or body"),
                    "409": error("invalid_transition"), "413": error("Body over 64 KiB")}})),
            "get": secured("terminal", json!({"summary": "One lot from the replica", "operationId": "getLot",
                "parameters": [lot_id(), min_seq(), param("If-None-Match", "header", false, json!({"type": "string"}), "ETag seen")],
                "responses": {"200": ok::<Lot>("The lot; ETag is its seq"), "304": {"description": "Not modified"},
                    "400": error("Invalid id or query"), "404": error("No such lot"), "500": error("Injected failure"),
                    "503": error("replica_behind; see Retry-After")}}))
        },
        "/v1/lots/{id}/status": {"post": secured("admin", json!({"summary": "Change the status only",
            "operationId": "setStatus", "parameters": [lot_id()],
            "requestBody": {"required": true, "content": json_body::<StatusChange>()["content"]},
            "responses": {"200": ok::<AdminLot>("The lot"), "400": error("Invalid body"), "404": error("No such lot"),
                "409": error("invalid_transition"), "413": error("Body over 64 KiB")}}))},
        "/v1/lots/{id}/max": {"get": secured("bidder", json!({"summary": "The caller's own maximum and where they stand",
            "operationId": "myMax", "parameters": [lot_id()],
            "responses": {"200": ok::<MaxStatus>("Own maximum"), "400": error("Invalid id"),
                "404": error("No such lot")}}))},
        "/v1/admin/lots": {"get": secured("admin", json!({"summary": "Every lot with its reserve, from the primary",
            "operationId": "adminLots", "responses": {"200": {"description": "Lots",
                "content": {"application/json": {"schema": {"type": "array", "items": schema_ref::<AdminLot>()}}}}}}))},
        "/v1/admin/lots/{id}": {"get": secured("admin", json!({"summary": "One lot with its reserve, from the primary",
            "operationId": "adminLot", "parameters": [lot_id()],
            "responses": {"200": ok::<AdminLot>("The lot"), "400": error("Invalid id"),
                "404": error("No such lot")}}))},
        "/v1/lanes": {"get": secured("admin", json!({"summary": "Every lane with settings", "operationId": "lanes",
            "responses": {"200": {"description": "Lanes",
                "content": {"application/json": {"schema": {"type": "array", "items": schema_ref::<Lane>()}}}}}}))},
        "/v1/lanes/{lane}": {"put": secured("admin", json!({"summary": "Set how a lane runs its lots",
            "operationId": "setLane", "parameters": [param("lane", "path", true,
                json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}), "Lane")],
            "requestBody": {"required": true, "content": json_body::<LaneSettings>()["content"]},
            "responses": {"200": ok::<Lane>("The lane"), "400": error("Invalid lane or body")}}))},
        "/v1/lots/{id}/bids": {"get": secured("admin", json!({"summary": "The lot's audit trail: every bid and maximum, refused ones included",
            "operationId": "auditTrail", "parameters": [lot_id(),
                param("format", "query", false, json!({"type": "string", "enum": ["json", "jsonl", "csv"]}), "Export format"),
                param("after", "query", false, json!({"type": "integer", "minimum": 0}), "Entries after this id")],
            "responses": {"200": {"description": "{lot_id, entries} (json), one entry per line (jsonl) or CSV",
                "content": {"application/json": {"schema": {"type": "object", "properties": {"lot_id": {"type": "string"},
                    "entries": {"type": "array", "items": schema_ref::<AuditEntry>()}}}},
                    "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}},
                "400": error("Invalid format or after"), "404": error("No such lot")}})),
        "post": secured("bidder", json!({"summary": "Place a bid and/or a maximum as the authenticated bidder",
            "operationId": "placeBid", "parameters": [lot_id(), param("Idempotency-Key", "header", false,
                json!({"type": "string", "minLength": 1, "maxLength": 128}), "Retries with the same key and body are not placed twice")],
            "requestBody": {"required": true, "content": json_body::<BidRequest>()["content"]},
            "responses": {"201": ok::<BidReceipt>("Accepted (or replayed)"), "400": error("Invalid body or key"),
                "404": error("No such lot"), "409": error("bid_too_low, lot_not_open or idempotency_conflict"),
                "413": error("Body over 64 KiB")}}))},
        "/v1/lots": {"get": secured("terminal", json!({"summary": "Batch fetch (ids) or snapshot of every lot",
            "operationId": "getLots", "parameters": [
                param("ids", "query", false, json!({"type": "string"}), "Comma-separated lot ids, at most 500"), min_seq()],
            "responses": {"200": ok::<LotsResponse>("Lots consistent as of seq"), "400": error("Invalid query"),
                "500": error("Injected failure"), "503": error("replica_behind; see Retry-After")}}))},
        "/v1/changes": {"get": secured("terminal", json!({"summary": "Log entries after a sequence",
            "operationId": "getChanges", "parameters": [
                param("after", "query", false, json!({"type": "integer", "minimum": 0}), "Last sequence seen"),
                param("limit", "query", false, json!({"type": "integer", "minimum": 1, "maximum": 10000}), "Most entries")],
            "responses": {"200": ok::<ChangesResponse>("Entries in order, no gaps"), "400": error("Invalid query"),
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
            "operationId": "replication", "responses": {"200": ok::<ReplicationStatus>("Head, applied, lag")}}))},
        "/v1/chaos": {
            "get": secured("admin", json!({"summary": "Active faults", "operationId": "getChaos",
                "responses": {"200": ok::<ChaosSettings>("Settings"), "404": error("chaos_disabled")}})),
            "post": secured("admin", json!({"summary": "Change faults; omitted fields keep their values",
                "operationId": "patchChaos", "requestBody": {"required": true, "content": json_body::<ChaosPatch>()["content"]},
                "responses": {"200": ok::<ChaosSettings>("Settings"), "400": error("Invalid field"),
                    "404": error("chaos_disabled"), "413": error("Body over 64 KiB")}}))
        }
    });
    json!({
        "openapi": "3.1.0",
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
