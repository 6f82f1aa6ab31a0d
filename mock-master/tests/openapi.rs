//! The OpenAPI documents (the master's and a terminal server's) are valid by a real
//! validator, `openapi-spec-validator` (PyPI; `scripts/test.sh` installs it), and carry
//! every field of the wire types, since they are generated from them.

use std::process::Command;

use serde_json::Value;

/// What `openapi-spec-validator` says about `document`: `Ok` when it is valid.
fn validate(document: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs (with openapi-spec-validator; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "openapi-spec-validator is not installed: {said}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

#[test]
fn both_documents_pass_the_validator() {
    for document in [
        lotsync::serve::openapi::master_document(),
        lotsync::serve::openapi::terminal_server_document(),
    ] {
        if let Err(complaint) = validate(&document) {
            panic!("{complaint}\n{document:#}");
        }
    }
}

#[test]
fn the_validator_rejects_a_broken_document() {
    let mut document = lotsync::serve::openapi::master_document();
    // An operation whose response points at a schema that does not exist.
    document["paths"]["/v1/lots"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        ["$ref"] = "#/components/schemas/Nothing".into();
    document["paths"]["/v1/lots"]["get"]["responses"]["418"] = "not a response object".into();
    assert!(validate(&document).is_err());
}

#[test]
fn the_schemas_carry_every_field_of_the_wire_types() {
    let document = lotsync::serve::openapi::master_document();
    let schemas = &document["components"]["schemas"];
    // Serialise real values and check that each field has a property in its schema.
    let lot: lotsync::protocol::Lot = serde_json::from_str(
        r#"{"id":"lot-1","title":"Volvo","attributes":{},"currency":"EUR","starting_price":1,
        "increment":1,"reserve_price":null,"current_price":1,"bid_count":0,"leading_bidder":null,
        "status":"open","starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z",
        "seq":1,"updated_at":"2026-01-01T10:00:00Z","recent_bids":[],"stale":true}"#,
    )
    .unwrap();
    let settings = lotsync::protocol::ChaosSettings::default();
    for (name, value) in [
        ("Lot", serde_json::to_value(&lot).unwrap()),
        ("ChaosSettings", serde_json::to_value(&settings).unwrap()),
    ] {
        for field in value.as_object().unwrap().keys() {
            assert!(
                schemas[name]["properties"][field].is_object(),
                "{name}.{field} is not in the document"
            );
        }
    }
    assert_eq!(
        schemas["BidRequest"]["properties"]["amount"]["maximum"],
        serde_json::json!(lotsync::protocol::MAX_MONEY)
    );
    assert_eq!(schemas["BidRequest"]["additionalProperties"], false);
}
