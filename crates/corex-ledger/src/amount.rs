//! Token amounts: integer base units (u128, 18 decimals) and the fixed total supply.

use thiserror::Error;

/// Base units in one CXT.
pub const BASE_UNITS_PER_CXT: u128 = 1_000_000_000_000_000_000;
/// Every CXT that will ever exist: 100,000,000, minted once at genesis into the pool.
pub const TOTAL_SUPPLY: u128 = 100_000_000 * BASE_UNITS_PER_CXT;
/// Parts per million, the unit of every ratio in the rules.
pub const PPM: u128 = 1_000_000;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a CXT amount: {0} (expected digits with at most 18 decimals, e.g. 12.5)")]
pub struct AmountError(pub String);

/// `12.5` → 12.5 × 10¹⁸ base units. No floats: the text is split at the point.
pub fn parse_cxt(text: &str) -> Result<u128, AmountError> {
    let bad = || AmountError(text.chars().take(60).collect());
    let text_trimmed = text.trim();
    let (whole, fraction) = match text_trimmed.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text_trimmed, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let fraction = match fraction {
        Some(fraction) if !digits(fraction) || fraction.len() > 18 => return Err(bad()),
        Some(fraction) => fraction,
        None => "",
    };
    if !digits(whole) {
        return Err(bad());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let padded = format!("{fraction:0<18}");
    let fraction: u128 = padded.parse().map_err(|_| bad())?;
    whole
        .checked_mul(BASE_UNITS_PER_CXT)
        .and_then(|units| units.checked_add(fraction))
        .ok_or_else(bad)
}

/// Base units as a decimal CXT string, exact, without trailing zeros.
pub fn format_cxt(units: u128) -> String {
    let whole = units / BASE_UNITS_PER_CXT;
    let fraction = units % BASE_UNITS_PER_CXT;
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:018}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `a × b / c` with a 256-bit intermediate, rounded down; `None` if `c` is 0 or the result
/// does not fit in u128.
pub fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let product = ethnum::U256::from(a) * ethnum::U256::from(b);
    let quotient = product / ethnum::U256::from(c);
    u128::try_from(quotient).ok()
}

/// Integer square root, rounded down (Newton's method on integers).
pub fn isqrt(value: u128) -> u128 {
    if value < 2 {
        return value;
    }
    // Start above the root (2^⌈bits/2⌉) and descend; each step stays above until it lands.
    let bits = 128 - value.leading_zeros();
    let mut x: u128 = 1 << bits.div_ceil(2);
    loop {
        let next = (x + value / x) / 2;
        if next >= x {
            return x;
        }
        x = next;
    }
}

/// Serde for u128 amounts as decimal strings of base units: exact in every JSON reader, and
/// possible inside tagged enums (which cannot carry 128-bit numbers).
pub mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("not an amount in base units: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_and_format_exactly() {
        assert_eq!(parse_cxt("1").unwrap(), BASE_UNITS_PER_CXT);
        assert_eq!(parse_cxt("0.000000000000000001").unwrap(), 1);
        assert_eq!(
            parse_cxt("12.5").unwrap(),
            12 * BASE_UNITS_PER_CXT + BASE_UNITS_PER_CXT / 2
        );
        assert_eq!(
            format_cxt(12 * BASE_UNITS_PER_CXT + BASE_UNITS_PER_CXT / 2),
            "12.5"
        );
        assert_eq!(format_cxt(TOTAL_SUPPLY), "100000000");
        for bad in ["", ".", "1.", "-1", "1e5", "0.0000000000000000001", "x"] {
            assert!(parse_cxt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mul_div_survives_products_beyond_u128() {
        assert_eq!(
            mul_div(TOTAL_SUPPLY, u128::MAX / 2, u128::MAX / 2),
            Some(TOTAL_SUPPLY)
        );
        assert_eq!(mul_div(7, 3, 2), Some(10));
        assert_eq!(mul_div(1, 1, 0), None);
    }

    #[test]
    fn isqrt_is_exact() {
        for value in [0u128, 1, 2, 3, 4, 15, 16, 17, 1 << 100, u128::MAX] {
            let root = isqrt(value);
            assert!(root * root <= value);
            assert!((root + 1).checked_mul(root + 1).is_none_or(|s| s > value));
        }
    }
}
