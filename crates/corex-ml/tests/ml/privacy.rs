//! The privacy accountant: the Gaussian closed form at q = 1, monotonicity, agreement with
//! Google's `dp-accounting`, refusals.

use corex_ml::{MlError, RDP_ORDERS, epsilon};

/// ε of `steps` plain Gaussian mechanisms, minimised over the same orders by hand.
fn gaussian_epsilon(sigma: f64, steps: u64, delta: f64) -> (f64, u32) {
    RDP_ORDERS
        .map(|order| {
            let alpha = f64::from(order);
            let rdp = steps as f64 * alpha / (2.0 * sigma * sigma);
            let epsilon =
                rdp + ((alpha - 1.0) / alpha).ln() - (delta.ln() + alpha.ln()) / (alpha - 1.0);
            (epsilon, order)
        })
        .fold((f64::INFINITY, 0), |best, next| {
            if next.0 < best.0 { next } else { best }
        })
}

#[test]
fn full_batch_is_the_plain_gaussian_mechanism() {
    for (sigma, steps, delta) in [(5.0, 10, 1e-5), (1.0, 1, 1e-6), (0.7, 300, 1e-3)] {
        let spent = epsilon(sigma, 1.0, steps, delta).unwrap();
        let (expected, order) = gaussian_epsilon(sigma, steps, delta);
        assert!(
            (spent.epsilon - expected).abs() <= 1e-12 * expected,
            "σ {sigma}, T {steps}: {} vs {expected}",
            spent.epsilon
        );
        assert_eq!(spent.order, order);
        assert_eq!(spent.delta, delta);
    }
}

#[test]
fn sampling_rates_near_one_approach_the_gaussian() {
    let near = epsilon(2.0, 1.0 - 1e-12, 50, 1e-5).unwrap().epsilon;
    let full = epsilon(2.0, 1.0, 50, 1e-5).unwrap().epsilon;
    assert!((near - full).abs() < 1e-6 * full, "{near} vs {full}");
}

#[test]
fn epsilon_falls_with_noise_and_rises_with_steps_and_sampling_rate() {
    let base = |sigma: f64, q: f64, steps: u64| epsilon(sigma, q, steps, 1e-5).unwrap().epsilon;
    let sigmas = [0.5, 0.7, 1.0, 1.5, 2.0, 4.0];
    for pair in sigmas.windows(2) {
        assert!(
            base(pair[1], 0.01, 1000) < base(pair[0], 0.01, 1000),
            "σ {pair:?}"
        );
    }
    let steps = [1, 10, 100, 1000, 10_000];
    for pair in steps.windows(2) {
        assert!(
            base(1.1, 0.01, pair[1]) > base(1.1, 0.01, pair[0]),
            "T {pair:?}"
        );
    }
    let rates = [0.001, 0.01, 0.05, 0.2, 0.6, 1.0];
    for pair in rates.windows(2) {
        assert!(
            base(1.1, pair[1], 100) > base(1.1, pair[0], 100),
            "q {pair:?}"
        );
    }
}

/// Reference values from Google's `dp-accounting` 0.6.0 (`pip install dp-accounting`, Python
/// 3.11.7), integer orders 2..=256 like [`RDP_ORDERS`]:
///
/// ```python
/// import dp_accounting
/// from dp_accounting import rdp
/// for sigma, q, steps, delta in SETTINGS:
///     acc = rdp.RdpAccountant(orders=list(range(2, 257)))
///     acc.compose(dp_accounting.PoissonSampledDpEvent(
///         q, dp_accounting.GaussianDpEvent(sigma)), steps)
///     eps, order = acc.get_epsilon_and_optimal_order(delta)
/// ```
#[test]
fn epsilon_matches_dp_accounting() {
    // (σ, q, steps, δ, ε, optimal order)
    let reference = [
        (1.1, 0.01, 1000, 1e-5, 1.7252908180449444, 9),
        (1.0, 0.05, 500, 1e-5, 8.432313106433618, 3),
        (0.8, 0.004, 10_000, 1e-6, 4.54201754399085, 5),
        (2.0, 0.1, 100, 1e-5, 2.5866521781675305, 8),
        (0.5, 0.001, 2000, 1e-5, 5.1250266486612635, 3),
        (5.0, 1.0, 10, 1e-5, 2.814109167845533, 8),
        (8.0, 0.02, 50, 1e-5, 0.05968846913629091, 189),
        (3.0, 0.5, 20, 1e-8, 4.9493393431028005, 7),
    ];
    for (sigma, q, steps, delta, expected, order) in reference {
        let spent = epsilon(sigma, q, steps, delta).unwrap();
        let relative = (spent.epsilon - expected).abs() / expected;
        assert!(
            relative < 1e-9,
            "σ {sigma}, q {q}, T {steps}, δ {delta}: ε {} vs {expected} (relative {relative:e})",
            spent.epsilon
        );
        assert_eq!(spent.order, order, "σ {sigma}, q {q}");
    }
}

#[test]
fn extreme_parameters_stay_finite_or_infinite_never_nan() {
    // Large orders with tiny σ: exp((k²−k)/(2σ²)) overflows f64, its logarithm does not.
    let tight = epsilon(0.05, 0.3, 1_000_000, 1e-5).unwrap();
    assert!(
        tight.epsilon.is_finite() && tight.epsilon > 1e6,
        "{tight:?}"
    );
    // σ² underflows: no order gives a finite guarantee.
    assert_eq!(
        epsilon(1e-200, 0.5, 1, 1e-5).unwrap().epsilon,
        f64::INFINITY
    );
    // Huge noise or no steps: nothing is spent.
    assert_eq!(epsilon(1e6, 0.5, 10, 1e-5).unwrap().epsilon, 0.0);
    assert_eq!(epsilon(1.0, 0.5, 0, 1e-5).unwrap().epsilon, 0.0);
}

#[test]
fn invalid_parameters_are_refused() {
    let refused = |sigma: f64, q: f64, delta: f64| {
        matches!(epsilon(sigma, q, 10, delta), Err(MlError::Privacy(_)))
    };
    for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(refused(sigma, 0.1, 1e-5), "σ {sigma}");
    }
    for q in [0.0, -0.1, 1.0 + 1e-9, f64::NAN] {
        assert!(refused(1.0, q, 1e-5), "q {q}");
    }
    for delta in [0.0, 1.0, -1e-5, f64::NAN] {
        assert!(refused(1.0, 0.1, delta), "δ {delta}");
    }
    let message = epsilon(1.0, 2.0, 10, 1e-5).unwrap_err().to_string();
    assert!(message.contains("sampling rate 2"), "{message}");
}
