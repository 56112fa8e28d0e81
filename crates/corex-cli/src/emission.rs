//! `corex ledger emission`: the pool's release schedule, simulated on the real ledger.
//!
//! Runs the pure `corex_ledger::Chain` (real blocks, records, signatures and the settlement
//! that every block past an epoch's end performs) at the default genesis rules, with three
//! nodes working every epoch (one of them staked, so the advanced-work budget is paid too),
//! and prints the pool released per year over 20 years. Then it runs the same rules at very
//! different block rates and job counts (shorter spans, so it stays fast) and prints the
//! largest difference of the pool, epoch by epoch, from the coarse run, in base units: what
//! leaves the pool depends on ledger time, not on how many blocks, rounds or jobs there were.

use corex_core::{Hash, Keypair, NodeId};
use corex_ledger::{
    Chain, ContributionEntry, DeviceClass, Genesis, Params, SignedTx, TOTAL_SUPPLY, TxBody,
    format_cxt,
};

/// One way of filling each epoch with work.
struct Scenario {
    name: &'static str,
    /// Blocks per epoch, spread evenly over it.
    blocks_per_epoch: u64,
    /// Jobs whose rounds close in every block (one contributions record each).
    jobs: u64,
    epochs: u64,
}

/// The nodes' work per epoch, in FLOPs: node i does `(i + 1)` shares.
const SHARE_FLOPS: u128 = 6_000_000_000;
const NODES: usize = 3;
/// The epoch at which node 0 stakes, once its first rewards have vested.
const STAKE_EPOCH: u64 = 30;
const STAKE_CXT: u128 = 1_000;

fn key(seed: u8) -> Keypair {
    Keypair::from_secret([seed; 32])
}

/// A chain at the default rules, its coordinator and its registered nodes.
struct Sim {
    chain: Chain,
    coordinator: Keypair,
    nodes: Vec<Keypair>,
}

impl Sim {
    fn new() -> anyhow::Result<Self> {
        let coordinator = key(100);
        let genesis = Genesis::new("corex-emission", coordinator.id(), 0);
        let mut sim = Self {
            chain: Chain::new(genesis)?,
            coordinator,
            nodes: (1..=NODES as u8).map(key).collect(),
        };
        let registrations = sim
            .nodes
            .iter()
            .map(|node| {
                SignedTx::sign(
                    node,
                    &sim.chain.genesis_hash(),
                    1,
                    TxBody::RegisterNode {
                        device_fingerprint: Hash::of(&node.id().0),
                        device_class: DeviceClass::Gpu,
                    },
                )
            })
            .collect();
        sim.block(registrations, 0)?;
        Ok(sim)
    }

    fn params(&self) -> &Params {
        &self.chain.genesis().params
    }

    fn nonce(&self, id: &NodeId) -> u64 {
        self.chain.state().account(id).map_or(0, |a| a.nonce) + 1
    }

    fn block(&mut self, txs: Vec<SignedTx>, timestamp_ms: u64) -> anyhow::Result<()> {
        let proposal = self
            .chain
            .propose(&self.coordinator, txs, timestamp_ms)?
            .ok_or_else(|| anyhow::anyhow!("an empty block"))?;
        if let Some(refused) = proposal.refused.first() {
            anyhow::bail!("a simulated transaction was refused: {}", refused.error);
        }
        self.chain = proposal.next;
        Ok(())
    }

    /// One contributions record: `1 / parts` of every node's work of an epoch.
    fn contributions(&self, parts: u128) -> TxBody {
        let entries: Vec<ContributionEntry> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let units = (i as u128 + 1) * SHARE_FLOPS / parts;
                ContributionEntry {
                    pot_units: units,
                    ..ContributionEntry::compute(node.id(), units)
                }
            })
            .collect();
        let task_demand = entries.iter().map(|e| e.compute_units).sum();
        TxBody::RecordContributions {
            entries,
            task_demand,
        }
    }

    /// A block of the coordinator's records, signed as they are included.
    fn records(&mut self, bodies: Vec<TxBody>, timestamp_ms: u64) -> anyhow::Result<()> {
        let (proposal, left_out) =
            self.chain
                .propose_records(&self.coordinator, bodies, timestamp_ms)?;
        if let Some((_, error)) = left_out.first() {
            anyhow::bail!("a simulated record was refused: {error}");
        }
        self.chain = proposal
            .ok_or_else(|| anyhow::anyhow!("an empty block"))?
            .next;
        Ok(())
    }

    /// Runs `scenario`; returns the pool at the start of every epoch after the first (after
    /// the settlement of the one before), one entry per epoch.
    fn run(mut self, scenario: &Scenario) -> anyhow::Result<Vec<u128>> {
        let epoch_ms = self.params().epoch_ms;
        let parts = u128::from(scenario.blocks_per_epoch * scenario.jobs);
        let mut pools = Vec::with_capacity(scenario.epochs as usize);
        for epoch in 0..scenario.epochs {
            for block in 0..scenario.blocks_per_epoch {
                let timestamp_ms =
                    epoch * epoch_ms + block * (epoch_ms / scenario.blocks_per_epoch);
                if epoch == STAKE_EPOCH && block == 0 {
                    let staker = &self.nodes[0];
                    let stake = SignedTx::sign(
                        staker,
                        &self.chain.genesis_hash(),
                        self.nonce(&staker.id()),
                        TxBody::Stake {
                            amount: STAKE_CXT * corex_ledger::BASE_UNITS_PER_CXT,
                        },
                    );
                    self.block(vec![stake], timestamp_ms)?;
                }
                let bodies = (0..scenario.jobs)
                    .map(|_| self.contributions(parts))
                    .collect();
                self.records(bodies, timestamp_ms)?;
                if block == 0 && epoch > 0 {
                    pools.push(self.chain.state().pool);
                }
            }
        }
        // A last block past the end settles the last epoch.
        let end = scenario.epochs * epoch_ms;
        let last = scenario.epochs - 1;
        self.records(vec![TxBody::SettleEpoch { epoch: last }], end)?;
        pools.push(self.chain.state().pool);
        self.chain.state().check_supply()?;
        Ok(pools)
    }
}

/// Epochs in a Julian year (365.25 days; 8,766 one-hour epochs).
fn epochs_per_year(params: &Params) -> u64 {
    36_525 * 24 * 3_600_000 / 100 / params.epoch_ms
}

pub fn run(years: u64) -> anyhow::Result<()> {
    anyhow::ensure!(years >= 1, "simulate at least one year");
    let params = Params::default();
    let per_year = epochs_per_year(&params);
    println!(
        "emission at the default genesis: {} ms epochs, half-life {} ms ({:.2} years), release per worked epoch {} ppq of the pool",
        params.epoch_ms,
        params.half_life_ms,
        params.half_life_ms as f64 / (per_year * params.epoch_ms) as f64,
        params.release_per_epoch_ppq()?
    );
    println!(
        "{NODES} nodes work every epoch; node 1 stakes {STAKE_CXT} CXT at epoch {STAKE_EPOCH} (so the advanced budget is paid from then on)"
    );
    let started = std::time::Instant::now();
    let coarse = Scenario {
        name: "1 block / epoch, 1 job",
        blocks_per_epoch: 1,
        jobs: 1,
        epochs: years * per_year,
    };
    let others = [
        Scenario {
            name: "6 blocks / epoch, 5 jobs",
            blocks_per_epoch: 6,
            jobs: 5,
            epochs: 60 * 24,
        },
        Scenario {
            name: "120 blocks / epoch, 20 jobs",
            blocks_per_epoch: 120,
            jobs: 20,
            epochs: 3 * 24,
        },
    ];
    // The long run on one thread, the fast-paced ones on another.
    let (reference, other_pools) = std::thread::scope(|scope| {
        let long = scope.spawn(|| Sim::new()?.run(&coarse));
        let short = others
            .iter()
            .map(|scenario| Sim::new()?.run(scenario))
            .collect::<anyhow::Result<Vec<_>>>();
        let long = long
            .join()
            .map_err(|_| anyhow::anyhow!("the simulation thread panicked"));
        (long, short)
    });
    let (reference, other_pools) = (reference??, other_pools?);
    println!(
        "simulated {} epochs ({} blocks) and the other scenarios in {:.1} s",
        coarse.epochs,
        coarse.epochs + 1,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "  {:>4}  {:>28}  {:>9}  {:>28}  {:>9}",
        "year", "released in the year (CXT)", "of supply", "pool left (CXT)", "released"
    );
    let mut previous = TOTAL_SUPPLY;
    for year in 1..=years {
        let pool = reference[(year * per_year - 1) as usize];
        let released = previous - pool;
        println!(
            "  {year:>4}  {:>28}  {:>8.4}%  {:>28}  {:>8.4}%",
            format_cxt(released),
            percent(released),
            format_cxt(pool),
            percent(TOTAL_SUPPLY - pool)
        );
        previous = pool;
    }
    println!();
    println!("the same rules at other block rates and job counts (pool compared epoch by epoch):");
    println!(
        "  {:<30} {:>9} {:>10} {:>14} {:>26}",
        "scenario", "epochs", "blocks", "round records", "max |Δ pool| (base units)"
    );
    println!(
        "  {:<30} {:>9} {:>10} {:>14} {:>26}",
        coarse.name, coarse.epochs, coarse.epochs, coarse.epochs, "reference"
    );
    for (scenario, pools) in others.iter().zip(&other_pools) {
        let worst = pools
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or_default();
        println!(
            "  {:<30} {:>9} {:>10} {:>14} {:>26}",
            scenario.name,
            scenario.epochs,
            scenario.epochs * scenario.blocks_per_epoch,
            scenario.epochs * scenario.blocks_per_epoch * scenario.jobs,
            worst
        );
        if let Some(last) = pools.last() {
            let index = pools.len() - 1;
            println!(
                "  {:<30} released over its {} epochs: {} CXT (reference: {} CXT)",
                "",
                scenario.epochs,
                format_cxt(TOTAL_SUPPLY - last),
                format_cxt(TOTAL_SUPPLY - reference[index])
            );
        }
    }
    Ok(())
}

fn percent(units: u128) -> f64 {
    units as f64 * 100.0 / TOTAL_SUPPLY as f64
}
