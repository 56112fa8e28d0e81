//! `corex bench ledger`: the ledger's two hot paths against baselines taken in the same run.
//!
//! 1. Epoch settlement with 100,000 nodes and 1,000,000 contribution records (target < 1 s),
//!    beside one pass that computes the state root of the same state.
//! 2. Signed transfers applied per second on one core, through `Chain::propose` (batch
//!    signature check, apply, supply check, state root per block), beside the raw rate of
//!    verifying one ed25519 signature at a time (target: at least half of it).

use std::time::Instant;

use corex_core::{Hash, Keypair};
use corex_ledger::{
    Chain, ContributionEntry, DeviceClass, Genesis, NodeProfile, SignedTx, State, TxBody,
    format_cxt,
};

pub struct LedgerBenchOptions {
    pub nodes: u32,
    pub records: u32,
    pub accounts: u32,
    pub transfers: u32,
    pub block_size: u32,
}

fn key(index: u32) -> Keypair {
    let mut secret = [0x5a; 32];
    secret[..4].copy_from_slice(&index.to_le_bytes());
    Keypair::from_secret(secret)
}

pub fn run(options: &LedgerBenchOptions) -> anyhow::Result<()> {
    settlement(options)?;
    transactions(options)
}

/// Settlement cost at scale. The state is built directly (registrations are not what is
/// measured); the records go through `State::apply_verified`, the settlement through
/// `State::advance_to` past the epoch's end, as a block there would.
fn settlement(options: &LedgerBenchOptions) -> anyhow::Result<()> {
    println!(
        "epoch settlement: {} nodes, {} contribution records",
        options.nodes, options.records
    );
    let coordinator = key(u32::MAX);
    let genesis = Genesis::new("bench", coordinator.id(), 0);
    let mut state = State::genesis(&genesis);
    let ids: Vec<_> = (0..options.nodes)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            corex_core::NodeId(id)
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        state.nodes.insert(
            *id,
            NodeProfile::new(
                Hash::of(&i.to_le_bytes()),
                DeviceClass::Cpu,
                0,
                &genesis.params,
            ),
        );
        state.accounts.insert(*id, corex_ledger::Account::default());
    }
    let per_tx = 10_000usize;
    let mut nonce = 0u64;
    let record_txs: Vec<SignedTx> = (0..options.records as usize)
        .collect::<Vec<_>>()
        .chunks(per_tx)
        .map(|chunk| {
            nonce += 1;
            let entries = chunk
                .iter()
                .map(|r| ContributionEntry {
                    node: ids[r % ids.len()],
                    compute_units: 100 + (*r as u128 % 997),
                    pot_units: (*r as u128) % 13,
                    verification_units: (*r as u128) % 5,
                    quality_ppm: 500_000 + (*r as u32 % 500_000),
                })
                .collect();
            SignedTx::sign(
                &coordinator,
                &genesis.hash(),
                nonce,
                TxBody::RecordContributions {
                    entries,
                    task_demand: 1_100 * per_tx as u128,
                },
            )
        })
        .collect();
    let started = Instant::now();
    for tx in &record_txs {
        state.apply_verified(&genesis, tx)?;
    }
    let intake_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    state.advance_to(&genesis, genesis.epoch_end_ms(0))?;
    let settle_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let root = state.root();
    let root_s = started.elapsed().as_secs_f64();
    state.check_supply()?;
    let paid = state
        .last_settlement
        .as_ref()
        .map_or(0, |s| s.payouts.len());
    println!(
        "  record intake      {:>8.3} s  ({:.0} records/s)",
        intake_s,
        f64::from(options.records) / intake_s
    );
    println!(
        "  settlement         {:>8.3} s  ({paid} nodes paid, {} CXT released; target < 1 s)",
        settle_s,
        format_cxt(state.last_settlement.as_ref().map_or(0, |s| s.release))
    );
    println!(
        "  baseline: state root of the same state {:>8.3} s ({}) → settlement / root = {:.2}",
        root_s,
        root.short(),
        settle_s / root_s
    );
    Ok(())
}

/// Signed transfers through the real chain, against one-by-one signature verification.
fn transactions(options: &LedgerBenchOptions) -> anyhow::Result<()> {
    println!(
        "signed transactions: {} transfers among {} funded accounts, blocks of {}",
        options.transfers, options.accounts, options.block_size
    );
    let coordinator = key(u32::MAX);
    let mut genesis = Genesis::new("bench", coordinator.id(), 0);
    genesis.params.lock_epochs = 1;
    genesis.params.unbonding_epochs = 2;
    let mut chain = Chain::new(genesis)?;
    let chain_id = chain.genesis_hash();
    let keys: Vec<Keypair> = (0..options.accounts).map(key).collect();
    // Fund every account the only way there is: register, work, get paid, vest.
    let registrations = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            SignedTx::sign(
                k,
                &chain_id,
                1,
                TxBody::RegisterNode {
                    device_fingerprint: Hash::of(&i.to_le_bytes()),
                    device_class: DeviceClass::Cpu,
                },
            )
        })
        .collect();
    chain = adopt(&chain, &coordinator, registrations, 0)?;
    // Work in epochs 0 and 1; the block at the end of each settles it (the second vests).
    for epoch in 0..2u64 {
        let end = chain.genesis().epoch_end_ms(epoch);
        let records = [
            (
                TxBody::RecordContributions {
                    entries: keys
                        .iter()
                        .map(|k| ContributionEntry::compute(k.id(), 10))
                        .collect(),
                    task_demand: 10 * keys.len() as u128,
                },
                end - 1,
            ),
            (TxBody::SettleEpoch { epoch }, end),
        ];
        for (body, at) in records {
            let nonce = chain
                .state()
                .account(&coordinator.id())
                .map_or(0, |a| a.nonce)
                + 1;
            let tx = SignedTx::sign(&coordinator, &chain_id, nonce, body);
            chain = adopt(&chain, &coordinator, vec![tx], at)?;
        }
    }
    let now = chain.timestamp_ms();
    // Sign every transfer up front: signing is the wallets' work, not the ledger's.
    let count = options.accounts as usize;
    let transfers: Vec<SignedTx> = (0..options.transfers as usize)
        .map(|i| {
            let from = &keys[i % count];
            let to = keys[(i + 1) % count].id();
            let nonce = 2 + (i / count) as u64;
            SignedTx::sign(
                from,
                &chain_id,
                nonce,
                TxBody::Transfer { to, amount: 1_000 },
            )
        })
        .collect();

    let started = Instant::now();
    for tx in &transfers {
        tx.verify_signature(&chain_id)?;
    }
    let raw_rate = transfers.len() as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for block in transfers.chunks(options.block_size as usize) {
        chain = adopt(&chain, &coordinator, block.to_vec(), now)?;
    }
    let applied_rate = transfers.len() as f64 / started.elapsed().as_secs_f64();
    chain.state().check_supply()?;
    println!("  baseline: raw ed25519 verification, one at a time   {raw_rate:>10.0} sig/s");
    println!("  ledger: transfers verified, applied and blocked      {applied_rate:>10.0} tx/s");
    println!(
        "  ratio ledger / raw verification: {:.2} (target ≥ 0.5)",
        applied_rate / raw_rate
    );
    Ok(())
}

fn adopt(
    chain: &Chain,
    producer: &Keypair,
    txs: Vec<SignedTx>,
    timestamp_ms: u64,
) -> anyhow::Result<Chain> {
    let proposal = chain
        .propose(producer, txs, timestamp_ms)?
        .ok_or_else(|| anyhow::anyhow!("empty block"))?;
    if let Some(refused) = proposal.refused.first() {
        anyhow::bail!("benchmark transaction refused: {}", refused.error);
    }
    Ok(proposal.next)
}
