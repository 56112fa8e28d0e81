//! The `corex` binary. Only this file reads argv and the environment; each subcommand lives
//! in its own module and gets plain values.

mod admission_args;
mod bench;
mod bench_core;
mod bench_ledger;
mod bench_overhead;
mod bench_policy;
mod bench_privacy;
mod bench_restart;
mod bench_scheduler;
mod bench_single;
mod bench_stall;
mod bench_traffic;
mod bench_verify;
mod cpu_time;
mod devnet;
mod devnet_follow;
mod emission;
mod endpoint;
mod explorer_poll;
mod job;
mod ledger;
mod link;
mod node_bench;
mod processes;
mod quality;
mod serve;
mod status;
mod summary;
mod transfer;
mod wallet;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Training allocates and frees model-sized buffers at every step. glibc returns them to the
/// kernel and pays page faults to get them back; jemalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "corex",
    version,
    about = "Train models on a network of untrusted machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a running coordinator is and which certificate to pin.
#[derive(clap::Args)]
struct Connection {
    #[arg(long, env = "COREX_COORDINATOR", global = true, default_value = "")]
    coordinator: String,
    #[arg(long, env = "COREX_PIN", global = true, default_value = "")]
    pin: String,
}

#[derive(Subcommand)]
enum Command {
    /// Start a coordinator and N nodes on 127.0.0.1, train the default job, report.
    Devnet {
        /// Number of node processes.
        #[arg(long, default_value_t = 4)]
        nodes: u32,
        /// Where keys, logs, weights and the report are kept.
        #[arg(long, default_value = "./corex-devnet")]
        data_dir: PathBuf,
        /// A job spec (TOML) to run instead of the default digits job.
        #[arg(long)]
        job: Option<PathBuf>,
        /// Compute threads per node, and for the coordinator's replays.
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// Give up (and fail) after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout_s: u64,
        /// Make the first nodes cheat, one kind each: random, zeros, scaled, sign-flipped,
        /// copy, old, lazy, fake-gpu, bait-and-switch, skip-segment, false-feedback
        /// (comma-separated).
        #[arg(long, value_delimiter = ',')]
        adversaries: Vec<corex_node::Adversary>,
        /// The coordinator replays every audit itself, instead of letting the nodes (which
        /// share this machine) replay each other's results.
        #[arg(long)]
        coordinator_audits: bool,
        /// Device profiles of the first nodes, one each, comma-separated: a speed, fast (full
        /// speed), medium (3× slower) or edge (8× slower), and/or a backend, cpu or wgpu,
        /// joined by '+' (`edge`, `wgpu`, `medium+wgpu`); the rest are fast CPU nodes. More
        /// profiles than --nodes start more nodes.
        #[arg(long, value_delimiter = ',')]
        profiles: Vec<devnet::Profile>,
        /// A federated job: the digits training split is dealt out by class (each node holds
        /// at most half the classes) as each node's local data, which never leaves it; the
        /// coordinator keeps only the held-out validation split.
        #[arg(long, conflicts_with = "job")]
        federated: bool,
        /// Differential privacy for --federated: the Gaussian noise multiplier σ of DP-SGD.
        #[arg(long, requires = "federated")]
        dp_noise: Option<f64>,
        /// Differential privacy: the per-example gradient clipping norm.
        #[arg(long, default_value_t = 1.0, requires = "dp_noise")]
        dp_clip: f64,
        /// Differential privacy: the δ at which ε is reported.
        #[arg(long, default_value_t = 1e-5, requires = "dp_noise")]
        dp_delta: f64,
        /// Shape each node's link to the coordinator to this rate each way (`50mbit`,
        /// `512kbit`, `1gbit`): a relay per node paces its bytes, as a home link would.
        #[arg(long)]
        link: Option<link::LinkRate>,
    },
    /// Run a coordinator: the HTTPS API, jobs, rounds, leases and aggregation.
    Coordinator {
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        #[arg(long, default_value = "./corex-coordinator")]
        data_dir: PathBuf,
        /// Compute threads for replays, evaluation and aggregation (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: u32,
        /// A network on one machine (a devnet): no limit on nodes per device fingerprint or
        /// endpoint, and nodes with the same fingerprint may audit each other. Off by default:
        /// audits come from other hardware and Sybil limits apply.
        #[arg(long)]
        allow_shared_hardware: bool,
        /// Most live nodes one device fingerprint may run.
        #[arg(long, default_value_t = 1)]
        max_nodes_per_fingerprint: u32,
        /// Most live nodes one network endpoint (IP address) may run.
        #[arg(long, default_value_t = 4)]
        max_nodes_per_endpoint: u32,
        /// Append every request received, as received, to journal.log in the data directory
        /// (for audits: what exactly reached this coordinator).
        #[arg(long)]
        journal: bool,
        /// Start a new ledger with the devnet rules: two-second epochs, the main rules'
        /// four-year half-life (see docs/economics.md). A stored ledger keeps its own rules.
        #[arg(long)]
        devnet_ledger: bool,
        #[command(flatten)]
        owners: admission_args::AdmissionArgs,
    },
    /// Run a node agent against a coordinator (or `corex node bench`: measure this device).
    Node {
        #[command(subcommand)]
        action: Option<NodeAction>,
        /// Coordinator URL, e.g. https://10.0.0.5:7443.
        #[arg(long, env = "COREX_COORDINATOR", global = true)]
        coordinator: Option<String>,
        /// The coordinator's certificate fingerprint, as it printed at start.
        #[arg(long, env = "COREX_PIN", global = true)]
        pin: Option<String>,
        #[arg(long, default_value = "./corex-node", global = true)]
        data_dir: PathBuf,
        /// Compute threads (0: all cores).
        #[arg(long, default_value_t = 0, global = true)]
        threads: u32,
        /// Where to compute: auto (the fastest backend present, after a short matrix-product
        /// measurement), cpu, wgpu (Vulkan, Metal or DirectX; Mesa's lavapipe on a machine
        /// without a GPU) or cuda.
        #[arg(long, default_value = "auto")]
        backend: serve::BackendChoice,
        /// Work this many times slower than the hardware can (stands for a weaker device).
        #[arg(long, default_value_t = 1)]
        slowdown: u32,
        /// Cheat this way (the adversary kit, for tests and demonstrations).
        #[arg(long)]
        adversary: Option<corex_node::Adversary>,
        /// Leave every submitted result here too (for copying adversaries).
        #[arg(long)]
        collusion_dir: Option<PathBuf>,
        /// This node's own training data (CSV with a header, numeric features, an integer
        /// label) for federated jobs that name it as a data holder; it is read here and
        /// never sent anywhere.
        #[arg(long)]
        local_data: Option<PathBuf>,
        /// The label column of --local-data (default: the last column).
        #[arg(long, requires = "local_data")]
        label_column: Option<String>,
        #[command(flatten)]
        holder: admission_args::HolderArgs,
        /// Serve this node's Prometheus metrics at http://ADDR/metrics (plain HTTP: keep it on
        /// a loopback or private address), e.g. 127.0.0.1:9101.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// The network at a glance: the ledger, the nodes by backend, the jobs this key may read.
    Status {
        #[command(flatten)]
        coordinator: Connection,
        /// A job owner's key, to see its private jobs too (a throwaway key when absent).
        #[arg(long, env = "COREX_KEY", default_value = "./corex-owner.key")]
        key: PathBuf,
    },
    /// Submit and follow jobs on a running coordinator.
    Job {
        #[command(subcommand)]
        action: job::JobAction,
        #[command(flatten)]
        coordinator: Connection,
        /// The job owner's key (made on first use).
        #[arg(
            long,
            env = "COREX_KEY",
            global = true,
            default_value = "./corex-owner.key"
        )]
        key: PathBuf,
    },
    /// Check a coordinator's ledger: replay it from genesis and print the supply.
    Ledger {
        #[command(subcommand)]
        action: ledger::LedgerAction,
    },
    /// Your CXT account on a coordinator's ledger.
    Wallet {
        #[command(subcommand)]
        action: wallet::WalletAction,
        #[command(flatten)]
        coordinator: Connection,
        /// The wallet's key file.
        #[arg(
            long,
            env = "COREX_WALLET_KEY",
            global = true,
            default_value = "./corex-wallet.key"
        )]
        key: PathBuf,
    },
    /// Measure Corex against baselines taken in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet_by_default = matches!(cli.command, Command::Devnet { .. } | Command::Bench { .. });
    init_logging(quiet_by_default);
    match cli.command {
        Command::Devnet {
            nodes,
            data_dir,
            job,
            threads,
            timeout_s,
            adversaries,
            coordinator_audits,
            profiles,
            federated,
            dp_noise,
            dp_clip,
            dp_delta,
            link,
        } => {
            let spec = job::load_spec(job.as_deref())?;
            let federated = federated.then(|| devnet::FederatedDevnet {
                privacy: dp_noise.map(|noise_multiplier| corex_core::PrivacySpec {
                    clip_norm: dp_clip,
                    noise_multiplier,
                    delta: dp_delta,
                }),
            });
            let outcome = runtime()?.block_on(devnet::run(devnet::DevnetOptions {
                nodes: nodes.max(profiles.len() as u32),
                profiles,
                data_dir,
                spec,
                threads,
                timeout: std::time::Duration::from_secs(timeout_s),
                show_progress: true,
                adversaries,
                node_audits: !coordinator_audits,
                federated,
                explorer_poll: false,
                link,
                warm_up: false,
            }))?;
            summary::print(&outcome);
            if !outcome.succeeded() {
                anyhow::bail!(
                    "the devnet job did not finish: {:?}",
                    outcome.report.status.state
                );
            }
            Ok(())
        }
        Command::Coordinator {
            listen,
            data_dir,
            threads,
            allow_shared_hardware,
            max_nodes_per_fingerprint,
            max_nodes_per_endpoint,
            journal,
            devnet_ledger,
            owners,
        } => {
            serve::configure_threads(threads)?;
            let config = if allow_shared_hardware {
                corex_coordinator::CoordinatorConfig::one_machine()
            } else {
                corex_coordinator::CoordinatorConfig {
                    max_nodes_per_fingerprint,
                    max_nodes_per_endpoint,
                    ..Default::default()
                }
            };
            let config =
                owners.apply(corex_coordinator::CoordinatorConfig { journal, ..config })?;
            let config = if devnet_ledger {
                corex_coordinator::CoordinatorConfig {
                    genesis: corex_ledger::Params::devnet(),
                    ..config
                }
            } else {
                config
            };
            runtime()?.block_on(serve::coordinator(listen, data_dir, config))
        }
        Command::Node {
            action,
            coordinator,
            pin,
            data_dir,
            threads,
            backend,
            slowdown,
            adversary,
            collusion_dir,
            local_data,
            label_column,
            holder,
            metrics_listen,
        } => {
            use anyhow::Context;
            let threads = serve::configure_threads(threads)?;
            if let Some(NodeAction::Bench { repeats }) = action {
                let coordinator = coordinator.map(|url| (url, pin));
                return runtime()?.block_on(serve::node_bench(
                    coordinator,
                    &data_dir,
                    threads,
                    repeats,
                ));
            }
            let coordinator =
                coordinator.context("give --coordinator URL (or COREX_COORDINATOR)")?;
            let pin = pin.context("give --pin FINGERPRINT (or COREX_PIN)")?;
            // A node is one sequential loop; a single-threaded runtime spares it cross-thread
            // wake-ups. Its compute runs on the blocking pool and the rayon pool.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(serve::node(
                    &coordinator,
                    &pin,
                    &data_dir,
                    serve::NodeOptions {
                        threads,
                        backend,
                        slowdown,
                        adversary,
                        collusion_dir,
                        local_data: local_data.map(|path| (path, label_column)),
                        holder: holder.policy()?,
                        metrics_listen,
                    },
                ))
        }
        Command::Status { coordinator, key } => runtime()?.block_on(status::run(
            &coordinator.coordinator,
            &coordinator.pin,
            &key,
        )),
        Command::Job {
            action,
            coordinator,
            key,
        } => runtime()?.block_on(job::run(
            action,
            &coordinator.coordinator,
            &coordinator.pin,
            &key,
        )),
        Command::Ledger { action } => ledger::run(action),
        Command::Wallet {
            action,
            coordinator,
            key,
        } => runtime()?.block_on(wallet::run(
            action,
            &coordinator.coordinator,
            &coordinator.pin,
            &key,
        )),
        Command::Bench { which } => bench::run(which),
    }
}

#[derive(Subcommand)]
enum NodeAction {
    /// Measure this device (matrix products per backend and thread count, host and device
    /// memory bandwidth, and with --coordinator the round trip and throughput to it, repeated)
    /// and print a table; with --coordinator, also send the result in the node's signed
    /// device report.
    Bench {
        #[arg(long, default_value_t = 5)]
        repeats: u32,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Logs go to stderr; `RUST_LOG` overrides. Devnet and bench keep the terminal for progress.
fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
