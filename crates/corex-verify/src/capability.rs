//! Capability challenge: a node claims a speed; it must compute a seeded n×n matrix product,
//! commit to it, and answer a random vector; Freivalds' check costs O(n²) against the node's
//! O(n³), and the time to the commitment bounds the node's real speed.

use corex_core::Hash;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::VerifyError;

/// Size of the capability challenge product: 2·768³ ≈ 906 MFLOP, a 2.4 MB answer: large enough
/// that the compute, not the round trip or the matrix generation, sets the time on a CPU.
pub const CHALLENGE_SIZE: usize = 768;

/// The two seeded factors `A`, `B` (row-major, values in [−1, 1)).
pub fn challenge_matrices(seed: u64, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = || {
        (0..n * n)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    let a = draw();
    let b = draw();
    (a, b)
}

/// The commitment a node sends for its product `c` before it learns the check vector.
pub fn commit_product(c: &[f32]) -> Hash {
    let bytes: Vec<u8> = c.iter().flat_map(|v| v.to_le_bytes()).collect();
    Hash::of_parts(&[b"corex-capability", &bytes])
}

/// The verifier's random ±1 vector, drawn after the commitment arrived.
pub fn check_vector(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
        .collect()
}

fn mat_vec(m: &[f32], v: &[f64], n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            m[i * n..(i + 1) * n]
                .iter()
                .zip(v)
                .map(|(x, y)| f64::from(*x) * y)
                .sum()
        })
        .collect()
}

/// Freivalds: does `A·(B·r)` equal `C·r` within float tolerance? A wrong `C` passes with
/// probability at most 1/2 per vector; with ±1 vectors and wrong entries of any size, far less.
pub fn freivalds(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    r: &[f32],
    n: usize,
) -> Result<bool, VerifyError> {
    for (index, m) in [a, b, c].iter().enumerate() {
        if m.len() != n * n {
            return Err(VerifyError::Shape {
                index,
                expected: n * n,
                got: m.len(),
            });
        }
    }
    if r.len() != n {
        return Err(VerifyError::Shape {
            index: 3,
            expected: n,
            got: r.len(),
        });
    }
    let r: Vec<f64> = r.iter().map(|v| f64::from(*v)).collect();
    let expected = mat_vec(a, &mat_vec(b, &r, n), n);
    let got = mat_vec(c, &r, n);
    // Each entry of C is a sum of n products of values in [−1, 1): f32 error ≲ n·ε per entry,
    // summed over n entries of r.
    let tolerance = (n as f64) * (n as f64) * f64::from(f32::EPSILON) * 4.0;
    Ok(expected
        .iter()
        .zip(&got)
        .all(|(e, g)| g.is_finite() && (e - g).abs() <= tolerance))
}

/// GFLOP/s shown by computing an n×n product in `seconds`.
pub fn demonstrated_gflops(n: usize, seconds: f64) -> f64 {
    2.0 * (n as f64).powi(3) / seconds.max(1e-9) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; n * n];
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                for j in 0..n {
                    c[i * n + j] += aik * b[k * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn an_honest_product_passes_and_a_faked_one_fails() {
        let n = 64;
        let (a, b) = challenge_matrices(7, n);
        let c = product(&a, &b, n);
        let r = check_vector(99, n);
        assert!(freivalds(&a, &b, &c, &r, n).unwrap());
        let mut lazy = c.clone();
        lazy[n * 3 + 5] += 0.5;
        assert!(!freivalds(&a, &b, &lazy, &r, n).unwrap());
        assert!(!freivalds(&a, &b, &vec![0.0; n * n], &r, n).unwrap());
        assert!(freivalds(&a, &b, &c[1..], &r, n).is_err());
        assert_ne!(commit_product(&c), commit_product(&lazy));
    }
}
