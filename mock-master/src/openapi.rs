//! The OpenAPI document.

/// The document.
pub fn document() -> serde_json::Value {
    serde_json::json!({})
}
