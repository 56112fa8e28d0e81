//! The CI short run: every fuzz target over its seeds (valid inputs from the real encoders)
//! and a few thousand seeded mutations of them. A target that panics fails its test, which
//! names the mutation seed and saves the input for `cargo +nightly fuzz run <target> <file>`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use corex_fuzz::Target;
use corex_fuzz::mutate::Mutator;

/// Mutated inputs per target, on top of its seeds.
const MUTANTS: usize = 10_000;

/// A seed per target from its name (FNV-1a), so each target gets its own stream.
fn mutation_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

fn short_run(name: &str) {
    let target = corex_fuzz::target(name).expect("a target of that name");
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "{name} has no seeds");
    let seed = mutation_seed(name);
    let mut mutator = Mutator::new(seed);
    let mut previous = seeds[0].clone();
    for (index, input) in seeds.iter().enumerate() {
        run_one(target, seed, index, input);
    }
    for index in seeds.len()..seeds.len() + MUTANTS {
        // Mostly a fresh mutant of a seed, sometimes a mutant of the last mutant.
        let base = if mutator.below(4) == 0 {
            &previous
        } else {
            &seeds[mutator.below(seeds.len())]
        };
        let input = mutator.mutate(base, &seeds);
        run_one(target, seed, index, &input);
        previous = input;
    }
}

fn run_one(target: &Target, seed: u64, index: usize, input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| (target.run)(input))).is_ok() {
        return;
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.crash", target.name));
    let saved = std::fs::write(&path, input).map_or_else(
        |error| format!("not saved: {error}"),
        |()| format!("saved to {}", path.display()),
    );
    panic!(
        "target {} panicked on input {index} of mutation seed {seed:#x} ({} bytes, {saved})",
        target.name,
        input.len()
    );
}

/// One test per target, so they run in parallel and fail by name.
macro_rules! short_runs {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                short_run(stringify!($name));
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

short_runs! {
    request_signature,
    result_frame,
    tensor,
    dataset_bytes,
    dataset_csv,
    safetensors,
    ledger,
    upload_store,
    messages,
    job_spec,
}

#[test]
fn every_target_has_a_short_run() {
    let names: Vec<&str> = corex_fuzz::TARGETS
        .iter()
        .map(|target| target.name)
        .collect();
    assert_eq!(names, LISTED);
}

#[test]
fn a_panicking_target_fails_the_short_run() {
    fn fragile(data: &[u8]) {
        assert!(data.len() < 3, "too long");
    }
    let target = Target {
        name: "fragile",
        run: fragile,
        seeds: Vec::new,
    };
    run_one(&target, 0, 0, b"ok");
    let failed = catch_unwind(|| run_one(&target, 0, 1, b"long input"));
    assert!(failed.is_err());
}
