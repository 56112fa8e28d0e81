//! Verification of federated rounds, where nobody but the holder has the data and so nothing
//! can be replayed: a result is judged by what the coordinator can see without the data.
//!
//! - Repeated bytes (the same update as another result of the round, or of an earlier one)
//!   are a copy and rejected.
//! - The held-out validation check, on the job owner's validation data: the round's model
//!   moved by one result alone (the holder's locally trained model) must have a loss within
//!   [`VALIDATION_FACTOR`] times the round's median (garbage and scaled updates are far
//!   worse; honest non-IID drift is not), and the round's aggregate must not do clearly
//!   better without the result (a leave-one-out harm above [`MIN_HARM`] and
//!   [`HARM_TOLERANCE`] of the loss: a sign flip, which looks ordinary alone, hurts the
//!   aggregate).
//! - Gradient-consistency flags (norm and direction against the cohort) mark a result for the
//!   Model-PoT quality score but do not reject it on their own.
//!
//! The job's robust aggregation rule bounds whatever passes these checks. Under differential
//! privacy, [`privacy_report`] accounts what each holder's data has spent.

use corex_core::messages::{HolderPrivacy, PrivacyReport, ResultVerdict, RoundRecord};
use corex_core::{Hash, JobSpec, NodeId, WorkSpec};

use crate::verification::{AuditPlan, Candidate, Judged, RecordDelta};

/// A result whose solo validation loss exceeds this many times the round's median is
/// rejected (with at least [`MIN_VALIDATION_COHORT`] results to take a median of).
pub const VALIDATION_FACTOR: f32 = 3.0;

/// Fewer results than this are judged by finiteness alone: a median of two says little.
pub const MIN_VALIDATION_COHORT: usize = 3;

/// A result whose leave-one-out gain is below minus this fraction of the round's aggregate
/// validation loss, and below −[`MIN_HARM`], made the round's model clearly worse: the round
/// does better without it. Honest holders on class-skewed digits were seen down to −0.08
/// nats (−3 %) early in a job and −0.025 nats (−7 %) late; a sign flip loses 0.17 nats and
/// more from its second round on.
pub const HARM_TOLERANCE: f32 = 0.05;

/// Smallest harm, in nats of validation loss, that rejects a result.
pub const MIN_HARM: f32 = 0.1;

/// What the job owner's held-out validation data says about one federated result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    /// Validation loss of the round's model moved by this result alone.
    pub solo_loss: f32,
    /// Validation loss of the round's aggregate without this result, minus that of the full
    /// aggregate: positive when the result helped, negative when it hurt.
    pub gain: f32,
    /// Validation loss of the round's full aggregate.
    pub aggregate_loss: f32,
}

/// The held-out checks of a round of `count` results: `solo(i)` is the validation loss of
/// the round's model moved by result `i` alone, `aggregate_loss(subset)` that of the model
/// the round's aggregation and outer step make of the results in `subset` (the round's model
/// as it was, for none).
pub fn held_out_checks(
    count: usize,
    solo: impl Fn(usize) -> f32,
    aggregate_loss: impl Fn(&[usize]) -> f32,
) -> Vec<HeldOut> {
    let all: Vec<usize> = (0..count).collect();
    let full = aggregate_loss(&all);
    (0..count)
        .map(|left_out| {
            let others: Vec<usize> = all.iter().copied().filter(|i| *i != left_out).collect();
            HeldOut {
                solo_loss: solo(left_out),
                gain: aggregate_loss(&others) - full,
                aggregate_loss: full,
            }
        })
        .collect()
}

/// One verdict per candidate, in order, from the round's [`HeldOut`] checks. Rejected
/// results get no replacement: they simply do not count.
pub fn judge_federated(
    records: &mut Vec<RecordDelta>,
    candidates: &[Candidate<'_>],
    plan: &AuditPlan,
    checks: &[HeldOut],
) -> Vec<Judged> {
    let mut finite: Vec<f32> = checks
        .iter()
        .map(|check| check.solo_loss)
        .filter(|loss| loss.is_finite())
        .collect();
    finite.sort_by(f32::total_cmp);
    let median = (finite.len() >= MIN_VALIDATION_COHORT).then(|| finite[finite.len() / 2]);
    candidates
        .iter()
        .zip(&plan.audits)
        .zip(checks)
        .map(|((candidate, planned), check)| {
            let repeated = planned.flag.as_deref() == Some("repeated_result");
            let reason = rejection(repeated, check, median);
            // A repeat is proof of copying and counts towards a ban; the statistical checks
            // can misjudge an honest holder now and then, so they only cost the result.
            if repeated {
                records.push(RecordDelta::failed(candidate.node));
            }
            let evidence = evidence(&candidate.fragment, &candidate.result_hash, check);
            let verdict = match reason {
                Some(reason) if repeated => ResultVerdict::Rejected { evidence, reason },
                Some(reason) => ResultVerdict::Discarded { evidence, reason },
                None => ResultVerdict::Accepted {
                    audited: false,
                    flag: planned.flag.clone(),
                },
            };
            Judged {
                verdict,
                replacement: None,
                audited_by: None,
            }
        })
        .collect()
}

/// Why a federated result is rejected, if it is.
fn rejection(repeated: bool, check: &HeldOut, median: Option<f32>) -> Option<String> {
    let HeldOut {
        solo_loss,
        gain,
        aggregate_loss,
    } = *check;
    if repeated {
        return Some("repeated result: these bytes were already submitted".into());
    }
    if !(solo_loss.is_finite() && gain.is_finite() && aggregate_loss.is_finite()) {
        return Some(format!(
            "held-out validation is not finite (solo loss {solo_loss}, gain {gain})"
        ));
    }
    if let Some(median) = median
        && solo_loss > VALIDATION_FACTOR * median
    {
        return Some(format!(
            "held-out validation loss {solo_loss:.4} is above {VALIDATION_FACTOR}× the round's median {median:.4}"
        ));
    }
    let harm = -gain;
    (harm > MIN_HARM.max(HARM_TOLERANCE * aggregate_loss.abs())).then(|| {
        format!(
            "the round's model does better without this result: held-out loss {harm:.4} lower without it (of {aggregate_loss:.4})"
        )
    })
}

/// The evidence of a rejected federated result: `H(fragment ‖ result hash ‖ solo loss ‖
/// gain)`, which anyone with the validation data and the round's results can recompute.
fn evidence(fragment: &Hash, result_hash: &Hash, check: &HeldOut) -> Hash {
    Hash::of_parts(&[
        b"corex-evidence-federated",
        &fragment.0,
        &result_hash.0,
        &check.solo_loss.to_le_bytes(),
        &check.gain.to_le_bytes(),
    ])
}

/// Whether `node` may lease a fragment meant for `holder` (`None`: anyone may).
pub fn may_hold(holder: Option<NodeId>, node: &NodeId) -> bool {
    holder.is_none_or(|holder| holder == *node)
}

/// The privacy each holder of a differentially private federated job has spent, from the
/// results it sent (every computed fragment spent budget, whatever its verdict): `steps`
/// noisy local steps each, Poisson-sampled at `local_batch / samples`. `None` for a job
/// without differential privacy. An ε the accountant cannot bound is reported as infinite.
pub fn privacy_report(spec: &JobSpec, history: &[RoundRecord]) -> Option<PrivacyReport> {
    let federated = spec.federated.as_ref()?;
    let privacy = federated.privacy?;
    let steps_per_fragment = match spec.work {
        WorkSpec::LocalSteps { steps, .. } => u64::from(steps),
        _ => 1,
    };
    let holders: Vec<HolderPrivacy> = federated
        .holders
        .iter()
        .map(|holder| {
            let fragments = history
                .iter()
                .flat_map(|round| &round.results)
                .filter(|result| result.node == holder.node)
                .count() as u64;
            let sampling_rate = f64::from(federated.local_batch) / f64::from(holder.samples);
            let steps = fragments * steps_per_fragment;
            let epsilon = corex_ml::epsilon(
                privacy.noise_multiplier,
                sampling_rate,
                steps,
                privacy.delta,
            )
            .map_or(f64::INFINITY, |spent| spent.epsilon);
            HolderPrivacy {
                node: holder.node,
                sampling_rate,
                steps,
                epsilon,
            }
        })
        .collect();
    Some(PrivacyReport {
        clip_norm: privacy.clip_norm,
        noise_multiplier: privacy.noise_multiplier,
        delta: privacy.delta,
        epsilon: holders.iter().map(|h| h.epsilon).fold(0.0, f64::max),
        holders,
    })
}
