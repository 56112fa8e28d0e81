//! `corex wallet`: a key file and the account transactions, against a running coordinator.

use std::path::Path;

use clap::Subcommand;
use corex_core::NodeId;
use corex_ledger::{TxBody, TxReceipt, format_cxt, parse_cxt};
use corex_net::{CoordinatorClient, load_or_create_keypair};

#[derive(Subcommand)]
pub enum WalletAction {
    /// Make a new key file (refuses to overwrite one) and print its address.
    Keygen,
    /// Print the address of the key file.
    Address,
    /// Balance, stake, unbonding and locked rewards of an address (default: yours).
    Balance { address: Option<String> },
    /// Send AMOUNT CXT (e.g. 12.5) to ADDRESS.
    Transfer { to: String, amount: String },
    /// Stake AMOUNT CXT (your account must be a registered node).
    Stake { amount: String },
    /// Begin unbonding AMOUNT CXT of stake.
    Unstake { amount: String },
    /// Move stake whose unbonding period has ended back to your balance.
    Withdraw,
}

pub async fn run(
    action: WalletAction,
    coordinator: &str,
    pin: &str,
    key_path: &Path,
) -> anyhow::Result<()> {
    match action {
        WalletAction::Keygen => {
            anyhow::ensure!(
                !key_path.exists(),
                "{} already exists; not overwriting a key",
                key_path.display()
            );
            println!("{}", load_or_create_keypair(key_path)?.id());
            return Ok(());
        }
        WalletAction::Address => {
            anyhow::ensure!(
                key_path.exists(),
                "no key at {}; run `corex wallet keygen`",
                key_path.display()
            );
            println!("{}", load_or_create_keypair(key_path)?.id());
            return Ok(());
        }
        _ => {}
    }
    anyhow::ensure!(
        !coordinator.is_empty() && !pin.is_empty(),
        "give --coordinator URL and --pin FINGERPRINT (or COREX_COORDINATOR and COREX_PIN)"
    );
    anyhow::ensure!(
        key_path.exists(),
        "no key at {}; run `corex wallet keygen`",
        key_path.display()
    );
    let client = CoordinatorClient::new(coordinator, pin, load_or_create_keypair(key_path)?)?;
    let body = match action {
        WalletAction::Balance { address } => {
            let id: NodeId = match address {
                Some(text) => text
                    .parse()
                    .map_err(|_| anyhow::anyhow!("not an address: {text}"))?,
                None => client.id(),
            };
            return balance(&client, &id).await;
        }
        WalletAction::Transfer { to, amount } => TxBody::Transfer {
            to: to
                .parse()
                .map_err(|_| anyhow::anyhow!("not an address: {to}"))?,
            amount: parse_cxt(&amount)?,
        },
        WalletAction::Stake { amount } => TxBody::Stake {
            amount: parse_cxt(&amount)?,
        },
        WalletAction::Unstake { amount } => TxBody::BeginUnbonding {
            amount: parse_cxt(&amount)?,
        },
        WalletAction::Withdraw => TxBody::Withdraw,
        WalletAction::Keygen | WalletAction::Address => return Ok(()),
    };
    let TxReceipt { tx, height, block } = client.submit_tx(body).await?;
    println!("included: tx {tx} in block {height} ({})", block.short());
    Ok(())
}

async fn balance(client: &CoordinatorClient, id: &NodeId) -> anyhow::Result<()> {
    let Some(view) = client.ledger_account(id).await? else {
        println!("{id}: no account on this ledger");
        return Ok(());
    };
    let account = &view.account;
    println!("{id}");
    println!("  balance          {} CXT", format_cxt(account.balance));
    println!("  stake            {} CXT", format_cxt(account.stake));
    for entry in &account.unbonding {
        println!(
            "  unbonding        {} CXT, withdrawable from epoch {}",
            format_cxt(entry.amount),
            entry.release_epoch
        );
    }
    for reward in &account.locked {
        println!(
            "  locked reward    {} CXT, vests at epoch {}",
            format_cxt(reward.amount),
            reward.unlock_epoch
        );
    }
    println!("  nonce            {}", account.nonce);
    if let Some(node) = &view.node {
        println!(
            "  node             tier {:?}, score {}, {} tasks, failure rate {:.2}%, priority {}",
            node.tier,
            node.profile.score,
            node.profile.tasks_done,
            node.failure_rate_ppm as f64 / 10_000.0,
            node.priority
        );
    }
    Ok(())
}
