//! The ledger state and the one function that changes it: `apply` (with `advance_to`, in
//! `epochs`, for ledger time). Every handler checks everything first and writes only after,
//! so a refused transaction changes nothing.

use std::collections::BTreeMap;

use corex_core::{Hash, NodeId};
use serde::{Deserialize, Serialize};

use crate::account::{Account, Unbonding};
use crate::amount::{PPM, TOTAL_SUPPLY, mul_div};
use crate::error::LedgerError;
use crate::params::Genesis;
use crate::reputation::{NodeProfile, NodeStatus};
use crate::seeds::AuditSeeds;
use crate::settlement::{EpochLoad, EpochWork, Settlement};
use crate::tx::{ContributionEntry, SignedTx, TxBody, Verdict};

/// The newest recorded round of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundHead {
    pub round: u32,
    pub model: Hash,
    pub results_root: Hash,
}

/// Where every base unit is. The parts always add up to [`TOTAL_SUPPLY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    pub pool: u128,
    pub fund: u128,
    pub balances: u128,
    pub stakes: u128,
    pub unbonding: u128,
    pub locked_rewards: u128,
}

impl Supply {
    pub fn total(&self) -> u128 {
        self.pool + self.fund + self.balances + self.stakes + self.unbonding + self.locked_rewards
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The open epoch of ledger time: the one the last block fell in.
    pub epoch: u64,
    /// The mining pool: minted once at genesis, paid out by settlement, refilled by slashing.
    pub pool: u128,
    /// The ecosystem incentive fund: no transaction spends it.
    pub fund: u128,
    pub accounts: BTreeMap<NodeId, Account>,
    pub nodes: BTreeMap<NodeId, NodeProfile>,
    /// Work recorded in the current epoch, not yet settled.
    pub epoch_work: BTreeMap<NodeId, EpochWork>,
    /// Compute supply and task demand recorded in the current epoch.
    pub epoch_load: EpochLoad,
    pub rounds: BTreeMap<Hash, RoundHead>,
    /// The last settlement that released something, for reports.
    pub last_settlement: Option<Settlement>,
    /// The committed audit seed chains, the reveals, and the seeds rounds may claim.
    pub audit: AuditSeeds,
}

impl State {
    /// The genesis state: the whole supply in the pool, the coordinator's account empty.
    pub fn genesis(genesis: &Genesis) -> Self {
        let mut accounts = BTreeMap::new();
        accounts.insert(genesis.coordinator, Account::default());
        Self {
            epoch: 0,
            pool: TOTAL_SUPPLY,
            fund: 0,
            accounts,
            nodes: BTreeMap::new(),
            epoch_work: BTreeMap::new(),
            epoch_load: EpochLoad::default(),
            rounds: BTreeMap::new(),
            last_settlement: None,
            audit: AuditSeeds::default(),
        }
    }

    pub fn root(&self) -> Hash {
        Hash::of_parts(&[b"corex-state-v1", &crate::canonical(self)])
    }

    pub fn supply(&self) -> Supply {
        let mut supply = Supply {
            pool: self.pool,
            fund: self.fund,
            ..Supply::default()
        };
        for account in self.accounts.values() {
            supply.balances += account.balance;
            supply.stakes += account.stake;
            supply.unbonding += account.unbonding_total();
            supply.locked_rewards += account.locked_total();
        }
        supply
    }

    pub fn check_supply(&self) -> Result<(), LedgerError> {
        let found = self.supply().total();
        if found == TOTAL_SUPPLY {
            Ok(())
        } else {
            Err(LedgerError::SupplyBroken {
                expected: TOTAL_SUPPLY,
                found,
            })
        }
    }

    pub fn account(&self, id: &NodeId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Whether `node` is registered and not removed: its work can be recorded and paid.
    pub fn is_active_node(&self, node: &NodeId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|profile| profile.status == NodeStatus::Active)
    }

    /// Checks the signature, then applies. On error nothing has changed.
    pub fn apply(
        &mut self,
        genesis: &Genesis,
        chain: &Hash,
        tx: &SignedTx,
    ) -> Result<(), LedgerError> {
        tx.verify_signature(chain)?;
        self.apply_verified(genesis, tx)
    }

    /// Applies a transaction whose signature the caller has already checked.
    pub fn apply_verified(&mut self, genesis: &Genesis, tx: &SignedTx) -> Result<(), LedgerError> {
        if tx.body.is_coordinator_record() && tx.signer != genesis.coordinator {
            return Err(LedgerError::NotCoordinator(tx.signer));
        }
        let known = self.accounts.get(&tx.signer);
        if known.is_none() && !matches!(tx.body, TxBody::RegisterNode { .. }) {
            return Err(LedgerError::UnknownAccount(tx.signer));
        }
        let expected = known.map_or(0, |account| account.nonce) + 1;
        if tx.nonce < expected {
            return Err(LedgerError::NonceReplayed {
                expected,
                got: tx.nonce,
            });
        }
        if tx.nonce > expected {
            return Err(LedgerError::NonceSkipped {
                expected,
                got: tx.nonce,
            });
        }
        let signer = tx.signer;
        match &tx.body {
            TxBody::Transfer { to, amount } => self.transfer(signer, *to, *amount)?,
            TxBody::RegisterNode {
                device_fingerprint,
                device_class,
            } => {
                if self.nodes.contains_key(&signer) {
                    return Err(LedgerError::AlreadyRegistered(signer));
                }
                self.nodes.insert(
                    signer,
                    NodeProfile::new(
                        *device_fingerprint,
                        *device_class,
                        self.epoch,
                        &genesis.params,
                    ),
                );
                self.accounts.entry(signer).or_default();
            }
            TxBody::Stake { amount } => self.stake(signer, *amount)?,
            TxBody::BeginUnbonding { amount } => self.begin_unbonding(genesis, signer, *amount)?,
            TxBody::Withdraw => self.withdraw(signer)?,
            TxBody::RecordContributions {
                entries,
                task_demand,
            } => self.record_contributions(entries, *task_demand)?,
            TxBody::RecordVerdict { node, verdict, .. } => {
                self.record_verdict(genesis, *node, verdict)?
            }
            TxBody::CommitAuditChain { anchor } => self.audit.commit(*anchor),
            TxBody::RevealAuditSeed { job, seed } => {
                self.audit.check_reveal(seed)?;
                self.audit.reveal(*job, *seed);
            }
            TxBody::RecordRound {
                job,
                round,
                model,
                results_root,
                audit_seed,
            } => {
                self.audit.check_claim(job, audit_seed, *round)?;
                if let Some(last) = self.rounds.get(job)
                    && *round <= last.round
                {
                    return Err(LedgerError::RoundOutOfOrder {
                        job: *job,
                        last: last.round,
                        got: *round,
                    });
                }
                self.rounds.insert(
                    *job,
                    RoundHead {
                        round: *round,
                        model: *model,
                        results_root: *results_root,
                    },
                );
                self.audit.claim(job);
            }
            TxBody::SettleEpoch { epoch } => {
                if *epoch >= self.epoch {
                    return Err(LedgerError::EpochNotOver {
                        epoch: *epoch,
                        ends_ms: genesis.epoch_end_ms(*epoch),
                    });
                }
            }
        }
        // Every handler has succeeded, so the signer's account exists now.
        if let Some(account) = self.accounts.get_mut(&signer) {
            account.nonce = tx.nonce;
        }
        Ok(())
    }

    fn transfer(&mut self, from: NodeId, to: NodeId, amount: u128) -> Result<(), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let balance = self.accounts.get(&from).map_or(0, |a| a.balance);
        if balance < amount {
            return Err(LedgerError::Overdraft { balance, amount });
        }
        let receiving = self.accounts.get(&to).map_or(0, |a| a.balance);
        if from != to && receiving.checked_add(amount).is_none() {
            return Err(LedgerError::Overflow("transfer"));
        }
        if let Some(account) = self.accounts.get_mut(&from) {
            account.balance -= amount;
        }
        self.accounts.entry(to).or_default().balance += amount;
        Ok(())
    }

    fn active_node(&self, node: &NodeId) -> Result<&NodeProfile, LedgerError> {
        let profile = self.nodes.get(node).ok_or(LedgerError::NotANode(*node))?;
        if profile.status == NodeStatus::Removed {
            return Err(LedgerError::NodeRemoved(*node));
        }
        Ok(profile)
    }

    fn stake(&mut self, node: NodeId, amount: u128) -> Result<(), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        self.active_node(&node)?;
        let account = self
            .accounts
            .get_mut(&node)
            .ok_or(LedgerError::UnknownAccount(node))?;
        if account.balance < amount {
            return Err(LedgerError::Overdraft {
                balance: account.balance,
                amount,
            });
        }
        account.balance -= amount;
        account.stake += amount;
        Ok(())
    }

    fn begin_unbonding(
        &mut self,
        genesis: &Genesis,
        node: NodeId,
        amount: u128,
    ) -> Result<(), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        let release_epoch = self.epoch + genesis.params.unbonding_epochs;
        let account = self
            .accounts
            .get_mut(&node)
            .ok_or(LedgerError::UnknownAccount(node))?;
        if account.stake < amount {
            return Err(LedgerError::UnstakeTooMuch {
                stake: account.stake,
                amount,
            });
        }
        account.stake -= amount;
        account.unbonding.push(Unbonding {
            amount,
            release_epoch,
        });
        Ok(())
    }

    fn withdraw(&mut self, node: NodeId) -> Result<(), LedgerError> {
        let epoch = self.epoch;
        let account = self
            .accounts
            .get_mut(&node)
            .ok_or(LedgerError::UnknownAccount(node))?;
        let matured: u128 = account
            .unbonding
            .iter()
            .filter(|u| u.release_epoch <= epoch)
            .map(|u| u.amount)
            .sum();
        if matured == 0 {
            return Err(LedgerError::UnbondingNotDone {
                epoch,
                earliest: account.unbonding.iter().map(|u| u.release_epoch).min(),
            });
        }
        account.unbonding.retain(|u| u.release_epoch > epoch);
        account.balance += matured;
        Ok(())
    }

    fn record_contributions(
        &mut self,
        entries: &[ContributionEntry],
        task_demand: u128,
    ) -> Result<(), LedgerError> {
        let overflow = || LedgerError::Overflow("contributions");
        // Compute every new total first; write only if all of them are valid.
        let mut load = self.epoch_load;
        load.task_demand = load
            .task_demand
            .checked_add(task_demand)
            .ok_or_else(overflow)?;
        let mut updated: BTreeMap<NodeId, EpochWork> = BTreeMap::new();
        for entry in entries {
            self.active_node(&entry.node)?;
            if u128::from(entry.quality_ppm) > PPM {
                return Err(LedgerError::QualityOutOfRange(entry.quality_ppm));
            }
            let current = match updated.get(&entry.node) {
                Some(work) => work.clone(),
                None => self
                    .epoch_work
                    .get(&entry.node)
                    .cloned()
                    .unwrap_or_default(),
            };
            let quality = u128::from(entry.quality_ppm);
            let weighted = |units: u128| units.checked_mul(quality).ok_or_else(overflow);
            let advanced_units = entry
                .pot_units
                .checked_add(entry.verification_units)
                .ok_or_else(overflow)?;
            let next = EpochWork {
                compute: current
                    .compute
                    .checked_add(weighted(entry.compute_units)?)
                    .ok_or_else(overflow)?,
                advanced: current
                    .advanced
                    .checked_add(weighted(advanced_units)?)
                    .ok_or_else(overflow)?,
            };
            load.compute_supply = load
                .compute_supply
                .checked_add(entry.compute_units)
                .ok_or_else(overflow)?;
            updated.insert(entry.node, next);
        }
        self.epoch_work.extend(updated);
        self.epoch_load = load;
        Ok(())
    }

    fn record_verdict(
        &mut self,
        genesis: &Genesis,
        node: NodeId,
        verdict: &Verdict,
    ) -> Result<(), LedgerError> {
        self.active_node(&node)?;
        let params = &genesis.params;
        let mut voided = 0;
        let mut slashed = 0;
        if let Verdict::HardReject { .. } = verdict {
            // A registered node always has an account; nothing is written before this check.
            let account = self
                .accounts
                .get_mut(&node)
                .ok_or(LedgerError::UnknownAccount(node))?;
            voided = account.locked_total();
            account.locked.clear();
            let kept = slash_keep(account.stake, params.slash_ppm);
            slashed += account.stake - kept;
            account.stake = kept;
            for entry in &mut account.unbonding {
                let kept = slash_keep(entry.amount, params.slash_ppm);
                slashed += entry.amount - kept;
                entry.amount = kept;
            }
            // Supply is conserved, so the pool cannot overflow.
            self.pool += voided + slashed;
            // Work recorded in the open epoch is a reward not yet locked: void it too.
            self.epoch_work.remove(&node);
        }
        if let Some(profile) = self.nodes.get_mut(&node) {
            profile.record(verdict, params);
            profile.rewards_voided += voided;
            profile.slashed += slashed;
        }
        Ok(())
    }
}

/// What a slashed bucket keeps: `amount − ⌊amount × slash_ppm / 10⁶⌋`.
fn slash_keep(amount: u128, slash_ppm: u64) -> u128 {
    amount - mul_div(amount, u128::from(slash_ppm), PPM).unwrap_or(amount)
}
