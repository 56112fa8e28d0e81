//! `corex job submit | status | download | spec`: a job owner's view of a running coordinator.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use corex_core::messages::JobOutputs;
use corex_core::{DatasetSource, Hash, JobSpec};
use corex_net::{CoordinatorClient, load_or_create_keypair};

#[derive(Subcommand)]
pub enum JobAction {
    /// Submit a job spec (TOML); prints the job id.
    Submit {
        spec: PathBuf,
        /// A CSV file on this machine to train on: read here, uploaded to the coordinator as
        /// hash-checked chunks, and named in the spec by its content hash.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// The CSV's label column (default: the last one).
        #[arg(long, requires = "dataset")]
        label_column: Option<String>,
        /// A text file on this machine for a language model to train on (its bytes), uploaded
        /// like `--dataset`.
        #[arg(long, conflicts_with = "dataset")]
        text: Option<PathBuf>,
    },
    /// Cancel a running job of yours.
    Cancel { id: String },
    /// Show a job's progress and its held-out quality at every evaluated round.
    Status {
        id: String,
        /// Print the coordinator's status record as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Continue a prompt with a finished language-model job's weights (downloaded, run here).
    Generate {
        id: String,
        #[arg(long, default_value = "")]
        prompt: String,
        /// Bytes to generate.
        #[arg(long, default_value_t = 200)]
        length: usize,
        /// Softmax temperature (0: always the most likely byte).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Seed of the sampling; the same weights, prompt and seed give the same text.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Save a finished job's report (JSON) and its weights (safetensors), or for an inference
    /// or transform job its outputs (`.outputs.f32`, with `.outputs.indices.u32`).
    Download {
        id: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print the default job spec as TOML, a starting point for your own.
    Spec,
}

/// The spec at `path`, or the default digits job.
pub fn load_spec(path: Option<&Path>) -> anyhow::Result<JobSpec> {
    match path {
        None => Ok(JobSpec::default_digits()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            JobSpec::from_toml(&text).with_context(|| format!("in {}", path.display()))
        }
    }
}

pub async fn run(
    action: JobAction,
    coordinator: &str,
    pin: &str,
    key: &Path,
) -> anyhow::Result<()> {
    if let JobAction::Spec = action {
        print!("{}", JobSpec::default_digits().to_toml());
        return Ok(());
    }
    anyhow::ensure!(
        !coordinator.is_empty() && !pin.is_empty(),
        "give --coordinator URL and --pin FINGERPRINT (or COREX_COORDINATOR and COREX_PIN)"
    );
    let client = CoordinatorClient::new(coordinator, pin, load_or_create_keypair(key)?)?;
    match action {
        JobAction::Submit {
            spec,
            dataset,
            label_column,
            text,
        } => {
            let mut spec = load_spec(Some(&spec))?;
            if let Some(path) = text {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let data = corex_ml::Dataset::from_text(bytes)?;
                let uploaded = client.upload_dataset(&data.to_bytes()).await?;
                eprintln!(
                    "text {}: {} bytes, uploaded as {}",
                    path.display(),
                    data.len(),
                    uploaded.dataset
                );
                spec.dataset.source = DatasetSource::Uploaded {
                    dataset: uploaded.dataset,
                };
            }
            if let Some(path) = dataset {
                let data = corex_ml::Dataset::from_csv(&path, label_column.as_deref())?;
                let uploaded = client.upload_dataset(&data.to_bytes()).await?;
                eprintln!(
                    "dataset {}: {} samples × {} features, {} classes, uploaded as {}",
                    path.display(),
                    uploaded.samples,
                    uploaded.features,
                    uploaded.classes,
                    uploaded.dataset
                );
                spec.dataset.source = DatasetSource::Uploaded {
                    dataset: uploaded.dataset,
                };
            }
            println!("{}", client.submit_job(&spec).await?);
        }
        JobAction::Cancel { id } => {
            let id = parse_id(&id)?;
            client.cancel_job(&id).await?;
            println!("cancelled {id}");
        }
        JobAction::Status { id, json: true } => {
            let status = client.job_status(&parse_id(&id)?).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        JobAction::Status { id, json: false } => {
            let report = client.job_report(&parse_id(&id)?).await?;
            let status = &report.status;
            println!(
                "job {} ({}, {}): {:?}, round {}/{}",
                status.job,
                status.name,
                report.spec.model.family(),
                status.state,
                status.round,
                status.rounds
            );
            for line in crate::quality::evaluated_rounds(&report.spec.model, &report.rounds) {
                println!("  {line}");
            }
            if let Some(scaling) = &report.standardization {
                println!(
                    "  features standardized on the training split ({} features; the report holds each mean and scale)",
                    scaling.features()
                );
            }
        }
        JobAction::Generate {
            id,
            prompt,
            length,
            temperature,
            seed,
        } => {
            let id = parse_id(&id)?;
            let weights = client.download_weights(&id).await?;
            let (spec, params) = corex_ml::from_safetensors(&weights)?;
            let text = corex_ml::generate_text(
                &spec,
                &params,
                prompt.as_bytes(),
                length,
                temperature,
                seed,
            )?;
            println!("{prompt}{}", String::from_utf8_lossy(&text));
        }
        JobAction::Download { id, out } => {
            let id = parse_id(&id)?;
            std::fs::create_dir_all(&out)?;
            let report = client.job_report(&id).await?;
            if report.spec.work.trains() {
                let weights = out.join(format!("{}.safetensors", id.short()));
                std::fs::write(&weights, client.download_weights(&id).await?)?;
                println!("weights: {}", weights.display());
            } else {
                let values = out.join(format!("{}.outputs.f32", id.short()));
                let outputs = download_outputs(&client, &id, &values).await?;
                println!(
                    "outputs: {} ({} rows × {} f32, row i for the sample at position i of {})",
                    values.display(),
                    outputs.rows,
                    outputs.width,
                    indices_path(&values).display()
                );
            }
            let report_path = out.join(format!("{}.report.json", id.short()));
            std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)?;
            println!("report:  {}", report_path.display());
        }
        JobAction::Spec => {}
    }
    Ok(())
}

/// Saves a finished output job's rows at `values` (f32 LE, row-major) and their sample
/// indices next to it (see [`indices_path`]); returns what the coordinator says of them.
pub async fn download_outputs(
    client: &CoordinatorClient,
    job: &Hash,
    values: &Path,
) -> anyhow::Result<JobOutputs> {
    let outputs = client.job_outputs(job).await?;
    std::fs::write(values, client.fetch_blob(&outputs.values).await?)?;
    std::fs::write(
        indices_path(values),
        client.fetch_blob(&outputs.indices).await?,
    )?;
    Ok(outputs)
}

/// Where the sample indices of the rows at `values` go: `X.f32` → `X.indices.u32` (u32 LE,
/// one per row).
pub fn indices_path(values: &Path) -> PathBuf {
    values.with_extension("indices.u32")
}

fn parse_id(id: &str) -> anyhow::Result<Hash> {
    id.parse()
        .map_err(|error| anyhow::anyhow!("job id {id}: {error}"))
}
