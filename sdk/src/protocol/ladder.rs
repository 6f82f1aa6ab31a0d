//! Increment ladders: the minimum step between bids, by price band.
//!
//! Car auctions raise the step as the price climbs (100 € under 10,000 €, 250 € up to
//! 25,000 €, ...). A [`Ladder`] is that table; a single fixed increment is a ladder of
//! one band from 0.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{FieldError, MAX_MONEY, Money, validate_money};

/// Most bands a ladder may have.
pub const MAX_BANDS: usize = 32;

/// One band of a ladder: from `from` (inclusive, minor units) up to the next band's
/// `from`, each bid must be at least `step` above the current price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IncrementBand {
    /// Lowest price (inclusive) the band applies to.
    pub from: Money,
    /// Minimum step above a price in this band.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub step: Money,
}

/// An increment ladder: bands in ascending `from`, the first from 0.
///
/// On the wire it is either a number (one band from 0) or a list of bands:
///
/// ```
/// use lotsync::protocol::Ladder;
/// let fixed: Ladder = serde_json::from_str("5000").unwrap();
/// assert_eq!(fixed.step_at(9_999_999), 5_000);
/// let ladder: Ladder = serde_json::from_str(
///     r#"[{"from":0,"step":10000},{"from":1000000,"step":25000}]"#).unwrap();
/// ladder.validate("increment").unwrap();
/// assert_eq!(ladder.step_at(999_999), 10_000);
/// assert_eq!(ladder.step_at(1_000_000), 25_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    bands: Vec<IncrementBand>,
}

impl Ladder {
    /// A ladder of one band: the same `step` at every price.
    ///
    /// ```
    /// assert_eq!(lotsync::protocol::Ladder::fixed(500).step_at(1), 500);
    /// ```
    pub fn fixed(step: Money) -> Ladder {
        Ladder {
            bands: vec![IncrementBand { from: 0, step }],
        }
    }

    /// A ladder from its bands (check it with [`Ladder::validate`]).
    pub fn new(bands: Vec<IncrementBand>) -> Ladder {
        Ladder { bands }
    }

    /// The bands, in the order given.
    pub fn bands(&self) -> &[IncrementBand] {
        &self.bands
    }

    /// Check the ladder; the error names the field at fault, under `field`
    /// (`increment[1].from`, ...).
    ///
    /// ```
    /// use lotsync::protocol::{IncrementBand, Ladder};
    /// let bad = Ladder::new(vec![IncrementBand { from: 0, step: 100 },
    ///                            IncrementBand { from: 0, step: 200 }]);
    /// assert_eq!(bad.validate("increment").unwrap_err().field, "increment[1].from");
    /// ```
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        if self.bands.is_empty() {
            return Err(FieldError::new(field, "at least one band"));
        }
        if self.bands.len() > MAX_BANDS {
            return Err(FieldError::new(field, format!("at most {MAX_BANDS} bands")));
        }
        for (i, band) in self.bands.iter().enumerate() {
            if self.bands.len() == 1 && i == 0 {
                validate_money(field, band.step)?;
            } else {
                validate_money(&format!("{field}[{i}].step"), band.step)?;
            }
            let from_field = format!("{field}[{i}].from");
            if i == 0 {
                if band.from != 0 {
                    return Err(FieldError::new(from_field, "the first band starts at 0"));
                }
            } else {
                if !(0..=MAX_MONEY).contains(&band.from) {
                    return Err(FieldError::new(
                        from_field,
                        format!("must be between 0 and {MAX_MONEY} minor units"),
                    ));
                }
                if band.from <= self.bands[i - 1].from {
                    return Err(FieldError::new(
                        from_field,
                        "bands must be in strictly ascending order of `from`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The step that applies at `price`: the step of the last band whose `from` is at
    /// most `price` (the first band's below 0, and 1 for an empty ladder).
    ///
    /// ```
    /// # use lotsync::protocol::{IncrementBand, Ladder};
    /// let ladder = Ladder::new(vec![IncrementBand { from: 0, step: 100 },
    ///                               IncrementBand { from: 10_000, step: 250 }]);
    /// assert_eq!(ladder.step_at(9_999), 100);
    /// assert_eq!(ladder.step_at(10_000), 250);
    /// ```
    pub fn step_at(&self, price: Money) -> Money {
        self.bands
            .iter()
            .take_while(|b| b.from <= price)
            .last()
            .or(self.bands.first())
            .map_or(1, |b| b.step.max(1))
    }

    /// Whether the ladder is one band from 0 (a plain fixed increment).
    pub fn is_fixed(&self) -> bool {
        self.bands.len() == 1 && self.bands[0].from == 0
    }
}

impl From<Money> for Ladder {
    fn from(step: Money) -> Ladder {
        Ladder::fixed(step)
    }
}

impl From<Vec<IncrementBand>> for Ladder {
    fn from(bands: Vec<IncrementBand>) -> Ladder {
        Ladder::new(bands)
    }
}

impl Serialize for Ladder {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_fixed() {
            serializer.serialize_i64(self.bands[0].step)
        } else {
            self.bands.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Ladder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Ladder, D::Error> {
        struct LadderVisitor;

        impl<'de> Visitor<'de> for LadderVisitor {
            type Value = Ladder;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount in minor units or a list of {\"from\", \"step\"} bands")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ladder, E> {
                Ok(Ladder::fixed(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ladder, E> {
                // Out of range becomes a value `validate` refuses with the field's name.
                Ok(Ladder::fixed(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ladder, A::Error> {
                let mut bands = Vec::new();
                while let Some(band) = seq.next_element::<IncrementBand>()? {
                    if bands.len() == MAX_BANDS {
                        return Err(de::Error::custom(format!("at most {MAX_BANDS} bands")));
                    }
                    bands.push(band);
                }
                Ok(Ladder { bands })
            }
        }

        deserializer.deserialize_any(LadderVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(bands: &[(Money, Money)]) -> Ladder {
        Ladder::new(
            bands
                .iter()
                .map(|&(from, step)| IncrementBand { from, step })
                .collect(),
        )
    }

    #[test]
    fn steps_follow_the_band_edges() {
        let l = ladder(&[(0, 100), (10_000, 250), (25_000, 500)]);
        l.validate("increment").unwrap();
        for (price, step) in [
            (0, 100),
            (9_999, 100),
            (10_000, 250),
            (10_001, 250),
            (24_999, 250),
            (25_000, 500),
            (MAX_MONEY, 500),
        ] {
            assert_eq!(l.step_at(price), step, "at {price}");
        }
    }

    #[test]
    fn bad_ladders_name_the_field() {
        let cases: [(&[(Money, Money)], &str); 6] = [
            (&[], "increment"),
            (&[(5, 100)], "increment[0].from"),
            (&[(0, 100), (0, 200)], "increment[1].from"),
            (&[(0, 100), (500, 200), (400, 300)], "increment[2].from"),
            (&[(0, 100), (500, 0)], "increment[1].step"),
            (&[(0, 0)], "increment"),
        ];
        for (bands, field) in cases {
            assert_eq!(
                ladder(bands).validate("increment").unwrap_err().field,
                field,
                "{bands:?}"
            );
        }
        let too_many: Vec<(Money, Money)> = (0..=MAX_BANDS as Money).map(|i| (i, 1)).collect();
        assert_eq!(
            ladder(&too_many).validate("increment").unwrap_err().field,
            "increment"
        );
    }

    #[test]
    fn wire_form_is_a_number_or_a_list() {
        let fixed: Ladder = serde_json::from_str("250").unwrap();
        assert_eq!(serde_json::to_string(&fixed).unwrap(), "250");
        let json = r#"[{"from":0,"step":100},{"from":1000,"step":200}]"#;
        let bands: Ladder = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&bands).unwrap(), json);
        for bad in [
            r#""10""#,
            r#"[{"from":0}]"#,
            r#"[{"from":0,"step":1,"x":2}]"#,
            "1.5",
        ] {
            assert!(serde_json::from_str::<Ladder>(bad).is_err(), "{bad}");
        }
    }
}
