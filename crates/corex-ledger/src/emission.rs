//! The emission schedule's arithmetic: the share of the pool one epoch releases, from the
//! genesis half-life and epoch length, in integer fixed point.
//!
//! Each epoch in which someone worked releases `1 − 2^(−epoch_ms / half_life_ms)` of what
//! remains in the pool (before the demand factor), so a pool released every epoch halves
//! every `half_life_ms` of ledger time, however many blocks, rounds or jobs fill it. The
//! factor is computed once per settlement as parts per 10¹⁸ (ppq) from a Taylor series of
//! `e^(−x·ln 2)` at 10³⁶ scale in 256-bit integers: no floats, the same bits everywhere, and
//! a release share exact to 10⁻¹⁸ (at one-hour epochs and a four-year half-life it has 14
//! significant digits, so the half-life is what the parameters say to well under a second).

use ethnum::U256;

/// Parts per 10¹⁸: the unit of the per-epoch release share.
pub const PPQ: u128 = 1_000_000_000_000_000_000;

/// ln 2 × 10³⁶, rounded down (0.693147180559945309417232121458176568…).
const LN2_E36: u128 = 693_147_180_559_945_309_417_232_121_458_176_568;

/// The working scale of the series: 10³⁶, 18 guard digits beyond the result.
const SCALE: u128 = PPQ * PPQ;

/// `2^(−numerator / denominator)` in ppq, rounded down; `None` unless
/// `0 < denominator` and `numerator ≤ denominator`.
pub fn exp2_neg_ppq(numerator: u64, denominator: u64) -> Option<u128> {
    if denominator == 0 || numerator > denominator {
        return None;
    }
    let scale = U256::from(SCALE);
    // y = x · ln 2 ≤ ln 2 at 10³⁶ scale; e^(−y) = Σ (−y)ⁿ / n!, terms fall below one unit
    // after about 40 steps.
    let y = U256::from(LN2_E36) * U256::from(numerator) / U256::from(denominator);
    let mut term = scale;
    let mut positive = scale;
    let mut negative = U256::ZERO;
    let mut n = 1u32;
    loop {
        term = term * y / (scale * U256::from(n));
        if term == U256::ZERO {
            break;
        }
        if n % 2 == 1 {
            negative += term;
        } else {
            positive += term;
        }
        n += 1;
    }
    u128::try_from((positive - negative) / U256::from(PPQ)).ok()
}

/// The share of the pool one epoch releases at a demand factor of 1, in ppq:
/// `10¹⁸ − 2^(−epoch_ms / half_life_ms)`. `None` for lengths `Params::validate` refuses.
pub fn release_per_epoch_ppq(epoch_ms: u64, half_life_ms: u64) -> Option<u128> {
    if epoch_ms == 0 {
        return None;
    }
    exp2_neg_ppq(epoch_ms, half_life_ms).map(|retained| PPQ - retained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_hits_known_values() {
        assert_eq!(exp2_neg_ppq(0, 7), Some(PPQ));
        // 2^-1 = 0.5 exactly, within the last digit.
        assert!(exp2_neg_ppq(1, 1).unwrap().abs_diff(PPQ / 2) <= 1);
        // 2^-0.5 = 0.707106781186547524400844362…
        assert!(
            exp2_neg_ppq(1, 2)
                .unwrap()
                .abs_diff(707_106_781_186_547_524)
                <= 1
        );
        // 2^-0.25 = 0.840896415253714543031125476…
        assert!(
            exp2_neg_ppq(1, 4)
                .unwrap()
                .abs_diff(840_896_415_253_714_543)
                <= 1
        );
        assert_eq!(exp2_neg_ppq(2, 1), None);
        assert_eq!(exp2_neg_ppq(1, 0), None);
    }

    #[test]
    fn retention_compounds_to_the_half_life() {
        // Compounding the per-epoch retention over one half-life's epochs gives one half.
        let epochs = 35_064u64;
        let retained = exp2_neg_ppq(1, epochs).unwrap();
        let mut value = PPQ;
        for _ in 0..epochs {
            value = (U256::from(value) * U256::from(retained) / U256::from(PPQ))
                .try_into()
                .unwrap();
        }
        assert!(value.abs_diff(PPQ / 2) < PPQ / 1_000_000_000, "{value}");
    }
}
