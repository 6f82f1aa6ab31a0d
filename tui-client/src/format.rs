//! Text formatting shared by every screen: money, countdowns, truncation.
//!
//! Pure functions of their inputs (time is passed in), so screens render the same
//! way in snapshot tests as on a live terminal.

use chrono::{DateTime, Utc};
use lotsync::protocol::{Lot, LotStatus, Money};

/// Number of minor units per major unit for a currency: 1 for currencies without
/// decimals (JPY, KRW, ...), 100 for the rest.
pub fn minor_per_major(currency: &str) -> Money {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "UGX" | "XOF" | "XAF" => 1,
        _ => 100,
    }
}

/// Group the digits of a non-negative integer in thousands: `12345` → `"12,345"`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// An amount without its currency: `1234500` EUR → `"12,345.00"`.
pub fn amount(currency: &str, minor: Money) -> String {
    let per = minor_per_major(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let major = thousands(abs / per.unsigned_abs());
    if per == 1 {
        format!("{sign}{major}")
    } else {
        format!("{sign}{major}.{:02}", abs % per.unsigned_abs())
    }
}

/// An amount with its currency: `1234500` EUR → `"EUR 12,345.00"`.
pub fn money(currency: &str, minor: Money) -> String {
    format!("{currency} {}", amount(currency, minor))
}

/// An amount in whole major units, for big displays: `1234550` EUR → `"12,345"`.
pub fn whole(currency: &str, minor: Money) -> String {
    let per = minor_per_major(currency).unsigned_abs();
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}", thousands(minor.unsigned_abs() / per))
}

/// A span of time as a short countdown: `"1h 02m"`, `"4m 05s"`, `"45s"`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 86_400 {
        format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3_600)
    } else if s >= 3_600 {
        format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// What the "time left" column says about a lot at `now`.
pub fn time_left(lot: &Lot, now: DateTime<Utc>) -> String {
    match lot.status {
        LotStatus::Scheduled => format!("in {}", duration((lot.starts_at - now).num_seconds())),
        LotStatus::Open => {
            let left = (lot.ends_at - now).num_seconds();
            if left <= 0 {
                "closing".to_owned()
            } else {
                duration(left)
            }
        }
        _ => "—".to_owned(),
    }
}

/// Cut `text` to at most `width` characters, ending with `…` when it was cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// A short text form of an attribute value: strings without quotes.
pub fn attribute(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "yes".to_owned(),
        serde_json::Value::Bool(false) => "no".to_owned(),
        other => other.to_string(),
    }
}

/// An attribute as shown beside its label: counts get thousands separators and a
/// unit taken from the name (`mileage_km: 88555` → `88,555 km`); years stay plain.
pub fn attribute_display(key: &str, value: &serde_json::Value) -> String {
    match value.as_u64() {
        Some(n) if key != "year" => match key.rsplit_once('_') {
            Some((_, unit)) if UNITS.contains(&unit) => format!("{} {unit}", thousands(n)),
            _ => thousands(n),
        },
        _ => attribute(value),
    }
}

/// Unit suffixes an attribute name may end with.
const UNITS: [&str; 4] = ["km", "mi", "kw", "hp"];

/// Attribute names as labels: `mileage_km` → `"mileage"`, `body_type` → `"body type"`.
pub fn label(key: &str) -> String {
    let base = match key.rsplit_once('_') {
        Some((base, unit)) if UNITS.contains(&unit) => base,
        _ => key,
    };
    base.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_like_a_catalogue() {
        use serde_json::json;
        assert_eq!(label("mileage_km"), "mileage");
        assert_eq!(label("body_type"), "body type");
        assert_eq!(attribute_display("mileage_km", &json!(88555)), "88,555 km");
        assert_eq!(attribute_display("year", &json!(2021)), "2021");
        assert_eq!(attribute_display("doors", &json!(5)), "5");
        assert_eq!(attribute_display("make", &json!("Volvo")), "Volvo");
    }

    #[test]
    fn money_groups_thousands_and_keeps_cents() {
        assert_eq!(money("EUR", 1_234_500), "EUR 12,345.00");
        assert_eq!(money("EUR", 5), "EUR 0.05");
        assert_eq!(money("SEK", 10_000_000_000), "SEK 100,000,000.00");
        assert_eq!(money("JPY", 1_500_000), "JPY 1,500,000");
        assert_eq!(money("EUR", -150), "EUR -1.50");
        assert_eq!(whole("EUR", 1_234_599), "12,345");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(245), "4m 05s");
        assert_eq!(duration(3_720), "1h 02m");
        assert_eq!(duration(90_000), "1d 01h");
        assert_eq!(duration(-5), "0s");
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("Volvo", 10), "Volvo");
        assert_eq!(truncate("Volvo V90", 6), "Volvo…");
        assert_eq!(truncate("Volvo", 1), "…");
        assert_eq!(truncate("Volvo", 0), "");
    }
}
