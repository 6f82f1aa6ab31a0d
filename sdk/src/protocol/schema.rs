//! Schemas of the fields whose rules a type alone does not say (money's range, the
//! lot id's pattern, attribute values), for the OpenAPI derives of the wire types.
//! Each reads the same constants as the validation, so the document follows them.

use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};

use utoipa::openapi::{ArrayBuilder, Ref};

use super::{MAX_BANDS, MAX_FAULT_DELAY_MS, MAX_LOT_ID_LEN, MAX_MONEY};

fn money_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_MONEY))
}

/// An amount in minor units, `1..=MAX_MONEY`.
pub(crate) fn money() -> Schema {
    money_builder().into()
}

/// An optional amount: `null`, or `1..=MAX_MONEY`.
pub(crate) fn money_or_null() -> Schema {
    money_builder()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .into()
}

/// An increment: a fixed step, or a ladder of 1..=`MAX_BANDS` bands (the first from
/// 0, ascending), as [`Ladder`](super::Ladder)'s own serde reads it.
pub(crate) fn ladder() -> Schema {
    let bands = ArrayBuilder::new()
        .items(Ref::from_schema_name("IncrementBand"))
        .min_items(Some(1))
        .max_items(Some(MAX_BANDS));
    OneOfBuilder::new()
        .item(money_builder())
        .item(bands)
        .description(Some(
            "A fixed step, or a ladder: bands ascending in `from`, the first from 0",
        ))
        .into()
}

/// A lot id: 1–64 characters of `A-Z a-z 0-9 - _`.
pub(crate) fn lot_id() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_LOT_ID_LEN}}}$")))
        .into()
}

/// Free attributes: at most 32, each a string (≤ 200 characters), integer or boolean.
pub(crate) fn attributes() -> Schema {
    let value = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .item(ObjectBuilder::new().schema_type(Type::Boolean));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(32))
        .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
        .into()
}

/// A fault's delay in milliseconds, `0..=MAX_FAULT_DELAY_MS`.
pub(crate) fn fault_delay_ms() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(MAX_FAULT_DELAY_MS))
        .into()
}

/// A probability, `0..=1`.
pub(crate) fn rate() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .minimum(Some(0))
        .maximum(Some(1))
        .into()
}
