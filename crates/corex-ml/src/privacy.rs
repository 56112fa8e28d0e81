//! The privacy accountant of DP-SGD: how much (ε, δ)-differential privacy `steps` rounds of
//! the Poisson-subsampled Gaussian mechanism spend.
//!
//! In: the noise multiplier σ (noise standard deviation over the L2 sensitivity, i.e. over the
//! clip norm), the sampling rate q (expected batch over dataset size), the number of steps T
//! and the target δ. Out: a [`PrivacySpent`], the smallest ε this accountant can certify at δ
//! and the Rényi order that gives it.
//!
//! Method: Rényi DP of the sampled Gaussian mechanism at every integer order α in
//! [`RDP_ORDERS`] (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
//! Gaussian Mechanism", section 3.3):
//! `A_α = Σ_{k=0..α} C(α,k) (1−q)^{α−k} q^k exp((k²−k)/(2σ²))` and `RDP(α) = ln(A_α)/(α−1)`,
//! with `RDP(α) = α/(2σ²)` (the plain Gaussian) at q = 1. RDP composes additively over steps,
//! and converts to (ε, δ) with the bound of Canonne, Kamath, Steinke 2020 (Proposition 12) /
//! Asoodeh et al. 2020: `ε = T·RDP(α) + ln((α−1)/α) − (ln δ + ln α)/(α−1)`, minimised over α.
//! Where `δ² ≥ 1 − exp(−T·RDP(α))` the KL bound already gives ε = 0. This is the computation
//! of Google's `dp-accounting` `RdpAccountant` (and Opacus) restricted to the same orders.
//!
//! Invariant: nothing overflows — `A_α` is summed in log space with log-sum-exp; an order
//! whose divergence is still infinite simply loses the minimum, and ε is +∞ only when every
//! order does (σ so small that no finite guarantee exists).

use std::ops::RangeInclusive;

use crate::error::MlError;

/// The Rényi orders the accountant minimises over (the integers `dp-accounting` users
/// typically pass; large orders matter for large σ and few steps).
pub const RDP_ORDERS: RangeInclusive<u32> = 2..=256;

/// The privacy a run of DP-SGD has spent: it is (`epsilon`, `delta`)-differentially private.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacySpent {
    /// The smallest ε the accountant certifies at `delta`; +∞ when none is finite.
    pub epsilon: f64,
    /// The δ the ε holds at (the one asked for).
    pub delta: f64,
    /// The Rényi order α that gives `epsilon`, to see whether [`RDP_ORDERS`] was wide enough.
    pub order: u32,
}

/// The (ε, δ) spent by `steps` compositions of the Gaussian mechanism with noise multiplier
/// `noise_multiplier` on a Poisson sample of rate `sampling_rate`. Errors on σ not finite and
/// positive, q outside (0, 1] and δ outside (0, 1).
pub fn epsilon(
    noise_multiplier: f64,
    sampling_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<PrivacySpent, MlError> {
    if !(noise_multiplier.is_finite() && noise_multiplier > 0.0) {
        return Err(MlError::Privacy(format!(
            "noise multiplier {noise_multiplier} must be finite and positive"
        )));
    }
    if !(sampling_rate > 0.0 && sampling_rate <= 1.0) {
        return Err(MlError::Privacy(format!(
            "sampling rate {sampling_rate} is outside (0, 1]"
        )));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(MlError::Privacy(format!("delta {delta} is outside (0, 1)")));
    }
    let mut best = PrivacySpent {
        epsilon: f64::INFINITY,
        delta,
        order: *RDP_ORDERS.start(),
    };
    for order in RDP_ORDERS {
        let rdp = match steps {
            0 => 0.0,
            _ => steps as f64 * sampled_gaussian_rdp(noise_multiplier, sampling_rate, order),
        };
        let epsilon = epsilon_at_order(rdp, order, delta);
        // Strictly smaller: ties keep the lowest order, as `dp-accounting`'s argmin does.
        if epsilon < best.epsilon {
            best.epsilon = epsilon;
            best.order = order;
        }
    }
    Ok(best)
}

/// RDP at integer `order` ≥ 2 of one step of the Poisson-subsampled Gaussian mechanism.
fn sampled_gaussian_rdp(noise_multiplier: f64, sampling_rate: f64, order: u32) -> f64 {
    let alpha = f64::from(order);
    let variance = noise_multiplier * noise_multiplier;
    if sampling_rate == 1.0 {
        return alpha / (2.0 * variance);
    }
    let log_q = sampling_rate.ln();
    let log_one_minus_q = (-sampling_rate).ln_1p();
    let mut log_binomial = 0.0; // ln C(order, 0)
    let terms: Vec<f64> = (0..=order)
        .map(|k| {
            let k_f = f64::from(k);
            if k > 0 {
                // C(α, k) = C(α, k−1) · (α − k + 1) / k
                log_binomial += ((alpha - k_f + 1.0) / k_f).ln();
            }
            log_binomial
                + k_f * log_q
                + (alpha - k_f) * log_one_minus_q
                + (k_f * k_f - k_f) / (2.0 * variance)
        })
        .collect();
    log_sum_exp(&terms) / (alpha - 1.0)
}

/// `ln Σ exp(t)`, shifted by the largest term so that nothing overflows.
fn log_sum_exp(terms: &[f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// ε at δ from a composed RDP guarantee `rdp` at `order` ≥ 2.
fn epsilon_at_order(rdp: f64, order: u32, delta: f64) -> f64 {
    if rdp.is_nan() {
        return f64::INFINITY;
    }
    if rdp <= 0.0 || delta * delta + (-rdp).exp_m1() > 0.0 {
        // δ ≤ √(1 − exp(−KL)) and KL ≤ RDP(α): the mechanism is already (0, δ)-DP.
        return 0.0;
    }
    let alpha = f64::from(order);
    let epsilon = rdp + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0);
    epsilon.max(0.0)
}
