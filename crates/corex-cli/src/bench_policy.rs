//! `corex bench policy`: what a job's compression policies do to its training, without a
//! network, to tune them in a fraction of a devnet's time. The compressed job is trained in this
//! process as the network would train it (`bench_single::train`: simulated nodes, each with its
//! own error feedback, and published versions through the download policy). The whole job (the same job
//! without compression, or `--whole-job`) is trained beside it by `bench_single`. Both print
//! their held-out loss at each evaluation; a devnet of the same job ends within its run-to-run
//! spread of what this prints (README).

use corex_core::JobSpec;

use crate::bench_single::{Measurement, single_process, train};

/// Trains `spec` (with compression) in this process as `nodes` nodes would over the network,
/// and `whole` beside it, and prints the held-out loss of each.
pub fn run(spec: JobSpec, whole: JobSpec, nodes: u32) -> anyhow::Result<()> {
    anyhow::ensure!(nodes >= 1, "at least one simulated node");
    println!(
        "bench policy: job '{}', {} rounds, compression up {:?}, down {:?}, aggregation {:?}, outer {:?}; whole: outer {:?}; {nodes} simulated nodes",
        spec.name,
        spec.rounds,
        spec.compression,
        spec.download_compression,
        spec.aggregation,
        spec.optimizer,
        whole.optimizer
    );
    let (compressed, ..) = train(&spec, nodes as usize, true)?;
    let (whole_run, _) = single_process(&whole, nodes as usize)?;
    let describe = |m: &Measurement| crate::quality::describe(&spec.model, m.loss, m.accuracy);
    println!(
        "  whole      {} ({:.0} CPU-s)",
        describe(&whole_run),
        whole_run.cpu_s
    );
    println!(
        "  compressed {} ({:.0} CPU-s)",
        describe(&compressed),
        compressed.cpu_s
    );
    if let (Some(whole_loss), Some(compressed_loss)) = (whole_run.loss, compressed.loss) {
        println!(
            "  held-out loss after {} rounds, compressed − whole: {:+.4} nats",
            spec.rounds,
            compressed_loss - whole_loss
        );
    }
    Ok(())
}
