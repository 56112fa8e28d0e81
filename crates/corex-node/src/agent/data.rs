//! The data a fragment computes on: the built-in digits (loaded whole), a federated holder's
//! own data, or a job's shared dataset read chunk by chunk.
//!
//! A shared dataset is a blob in `corex-ml/dataset/v3`'s record-major encoding, named by the
//! root of its chunk manifest (the job's `dataset_hash`). The node fetches the manifest and the
//! header, then for each fragment only the chunks holding its samples, each checked against
//! the manifest and kept on disk by hash (`corex_net::sparse`); it computes on a dataset of
//! just those samples ([`EncodedLayout::subset`]), which gives the bits the whole dataset
//! would. A node never reads a path a job names.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use corex_core::chunk::{CHUNK_SIZE, Manifest};
use corex_core::{DatasetSource, Fragment, Hash};
use corex_ml::{Dataset, EncodedLayout, MlError};
use corex_net::{ChunkOrigin, CoordinatorClient};

use super::{JobContext, JobData, NodeAgent};
use crate::error::NodeError;

/// Largest shared dataset a node agrees to read (the manifest's size is the coordinator's word;
/// chunks are only ever held once fetched).
const MAX_SHARED_DATASET_BYTES: u64 = 1 << 32;

/// What a node moved for shared datasets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatasetTraffic {
    /// Chunks fetched from the coordinator, and their bytes.
    pub network_chunks: u64,
    pub network_bytes: u64,
    /// Chunks read from the node's chunk cache instead.
    pub cached_chunks: u64,
}

impl DatasetTraffic {
    fn add(&mut self, other: &Self) {
        self.network_chunks += other.network_chunks;
        self.network_bytes += other.network_bytes;
        self.cached_chunks += other.cached_chunks;
    }
}

/// The chunks of a shared dataset's blob this node holds.
struct HeldChunks {
    blob: Hash,
    manifest: Arc<Manifest>,
    chunks: HashMap<usize, Bytes>,
    traffic: DatasetTraffic,
}

impl HeldChunks {
    /// The chunks covering `ranges`, fetching (or reading from the chunk cache) those not
    /// held yet.
    async fn covering(
        &mut self,
        client: &CoordinatorClient,
        ranges: impl IntoIterator<Item = Range<u64>>,
    ) -> Result<HashMap<usize, Bytes>, NodeError> {
        let covering: BTreeSet<usize> = ranges
            .into_iter()
            .flat_map(|range| self.manifest.chunks_covering(range))
            .collect();
        let missing: Vec<usize> = covering
            .iter()
            .copied()
            .filter(|index| !self.chunks.contains_key(index))
            .collect();
        for index in missing {
            let (chunk, origin) = client
                .fetch_cached_chunk(&self.blob, &self.manifest, index)
                .await?;
            match origin {
                ChunkOrigin::Network => {
                    self.traffic.network_chunks += 1;
                    self.traffic.network_bytes += chunk.len() as u64;
                }
                ChunkOrigin::Cache => self.traffic.cached_chunks += 1,
            }
            self.chunks.insert(index, chunk);
        }
        // Cheap clones: `Bytes` share their buffer.
        Ok(covering
            .into_iter()
            .filter_map(|index| Some((index, self.chunks.get(&index)?.clone())))
            .collect())
    }
}

/// A job's shared dataset as far as this node has fetched it.
pub(super) struct ChunkedDataset {
    layout: EncodedLayout,
    held: HeldChunks,
}

impl ChunkedDataset {
    /// Fetches `blob`'s manifest and the chunks holding its header.
    async fn open(client: &CoordinatorClient, job: Hash, blob: Hash) -> Result<Self, NodeError> {
        let manifest = client.blob_manifest(&blob).await?;
        let bad = |reason: String| NodeError::BadDataset { job, reason };
        if manifest.chunk_size as usize > CHUNK_SIZE || manifest.total_bytes == 0 {
            return Err(bad(format!(
                "{} bytes in chunks of {} (at most {CHUNK_SIZE})",
                manifest.total_bytes, manifest.chunk_size
            )));
        }
        if manifest.total_bytes > MAX_SHARED_DATASET_BYTES {
            return Err(bad(format!(
                "{} bytes (at most {MAX_SHARED_DATASET_BYTES})",
                manifest.total_bytes
            )));
        }
        let mut held = HeldChunks {
            blob,
            manifest: Arc::new(manifest),
            chunks: HashMap::new(),
            traffic: DatasetTraffic::default(),
        };
        let header = 0..held
            .manifest
            .total_bytes
            .min(EncodedLayout::MAX_HEADER_BYTES as u64);
        let chunks = held.covering(client, [header.clone()]).await?;
        let prefix =
            read_range(&chunks, &held.manifest, header).map_err(|error| bad(error.to_string()))?;
        let layout = EncodedLayout::parse(&prefix).map_err(|error| bad(error.to_string()))?;
        if layout.encoded_bytes() != held.manifest.total_bytes {
            return Err(bad(format!(
                "the header describes {} bytes, the blob has {}",
                layout.encoded_bytes(),
                held.manifest.total_bytes
            )));
        }
        Ok(Self { layout, held })
    }

    /// A dataset of just the samples `indices` (windows of `window` bytes for text) and the
    /// indices into it, fetching the chunks that hold them first.
    async fn view(
        &mut self,
        client: &CoordinatorClient,
        job: Hash,
        indices: &[u32],
        window: usize,
    ) -> Result<(Arc<Dataset>, Vec<u32>), NodeError> {
        let ranges = indices
            .iter()
            .map(|&index| self.layout.sample_range(index, window))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| NodeError::Compute(error.to_string()))?;
        let before = self.held.traffic.network_chunks;
        let chunks = self.held.covering(client, ranges).await?;
        if self.held.traffic.network_chunks > before {
            tracing::debug!(
                job = %job.short(),
                fetched = self.held.traffic.network_chunks - before,
                held = self.held.chunks.len(),
                of = self.held.manifest.chunks.len(),
                "dataset chunks fetched"
            );
        }
        let layout = self.layout;
        let manifest = self.held.manifest.clone();
        let indices = indices.to_vec();
        let (subset, local) = tokio::task::spawn_blocking(move || {
            layout.subset(&indices, window, |range| {
                read_range(&chunks, &manifest, range)
            })
        })
        .await
        .map_err(|error| NodeError::Compute(error.to_string()))?
        .map_err(|error| NodeError::BadDataset {
            job,
            reason: error.to_string(),
        })?;
        Ok((Arc::new(subset), local))
    }
}

/// The bytes `range` of the blob from the held chunks (all of which must be there).
fn read_range(
    chunks: &HashMap<usize, Bytes>,
    manifest: &Manifest,
    range: Range<u64>,
) -> Result<Vec<u8>, MlError> {
    let mut bytes = Vec::with_capacity((range.end - range.start) as usize);
    for index in manifest.chunks_covering(range.clone()) {
        let chunk = chunks
            .get(&index)
            .ok_or_else(|| MlError::Dataset(format!("chunk {index} is not held")))?;
        let chunk_range = manifest.range_of(index);
        let start = (range.start as usize).max(chunk_range.start) - chunk_range.start;
        let end = (range.end as usize).min(chunk_range.end) - chunk_range.start;
        bytes.extend_from_slice(&chunk[start..end]);
    }
    Ok(bytes)
}

impl NodeAgent {
    /// The job's descriptor and where its data comes from, cached by job.
    pub(super) async fn job_context(&mut self, job: &Hash) -> Result<Arc<JobContext>, NodeError> {
        if let Some(context) = self.jobs.get(job) {
            return Ok(context.clone());
        }
        let descriptor = self.client.job(job).await?;
        let data = if descriptor.spec.federated.is_some() {
            // The job's `dataset` is the owner's validation data: nothing for a node to load.
            JobData::HoldersOwn
        } else if descriptor.spec.dataset.source == DatasetSource::Digits {
            let expected = descriptor.dataset_hash;
            let digits = tokio::task::spawn_blocking(Dataset::digits)
                .await
                .map_err(|error| NodeError::Compute(error.to_string()))?
                .map_err(|error| NodeError::Compute(error.to_string()))?;
            let local = Hash(digits.content_hash());
            if local != expected {
                return Err(NodeError::DatasetMismatch {
                    job: *job,
                    local,
                    expected,
                });
            }
            JobData::Whole(Arc::new(digits))
        } else {
            // The blob must be the dataset the job names: its manifest root is the job's
            // dataset hash, and every chunk is checked against that manifest.
            let blob = descriptor
                .dataset_blob
                .ok_or(NodeError::NoDatasetBlob(*job))?;
            if blob != descriptor.dataset_hash {
                return Err(NodeError::DatasetMismatch {
                    job: *job,
                    local: blob,
                    expected: descriptor.dataset_hash,
                });
            }
            if !self.datasets.contains_key(&blob) {
                let dataset = ChunkedDataset::open(&self.client, *job, blob).await?;
                self.datasets.insert(blob, dataset);
            }
            JobData::Chunked(blob)
        };
        let context = Arc::new(JobContext { descriptor, data });
        self.jobs.insert(*job, context.clone());
        Ok(context)
    }

    /// The data `fragment` computes on and the indices into it: the job's shared dataset (for
    /// a chunked one, a dataset of just the fragment's samples), or for a federated fragment
    /// this node's local data, after checking that the fragment is this node's and the job's
    /// declared sample count is the local one.
    pub(super) async fn fragment_data(
        &mut self,
        fragment: &Fragment,
        job: &JobContext,
    ) -> Result<(Arc<Dataset>, Vec<u32>), NodeError> {
        let Some(holder) = fragment.holder else {
            return match &job.data {
                JobData::Whole(dataset) => Ok((dataset.clone(), fragment.indices.clone())),
                JobData::Chunked(blob) => {
                    let window = job.descriptor.spec.model.window().unwrap_or(1);
                    let dataset = self
                        .datasets
                        .get_mut(blob)
                        .ok_or(NodeError::NoDatasetBlob(fragment.job))?;
                    dataset
                        .view(&self.client, fragment.job, &fragment.indices, window)
                        .await
                }
                JobData::HoldersOwn => Err(NodeError::Compute(
                    "a federated job's fragment names no holder".into(),
                )),
            };
        };
        if holder != self.key.id() {
            return Err(NodeError::NotTheHolder {
                fragment: fragment.id,
                holder: holder.short(),
            });
        }
        let local = self
            .local
            .as_ref()
            .ok_or(NodeError::NoLocalData(fragment.job))?;
        let declared = job
            .descriptor
            .spec
            .federated
            .as_ref()
            .and_then(|federated| federated.holder(&holder))
            .map_or(0, |declared| declared.samples);
        if declared as usize != local.dataset.len() {
            return Err(NodeError::LocalSampleCount {
                job: fragment.job,
                declared,
                local: local.dataset.len(),
            });
        }
        Ok((local.dataset.clone(), fragment.indices.clone()))
    }

    /// What this run has done, with every shared dataset's traffic (each logged).
    pub(super) fn summary(&self) -> super::NodeRunSummary {
        let mut total = DatasetTraffic::default();
        for (blob, dataset) in &self.datasets {
            let traffic = dataset.held.traffic;
            tracing::info!(
                dataset = %blob.short(),
                network_bytes = traffic.network_bytes,
                network_chunks = traffic.network_chunks,
                cached_chunks = traffic.cached_chunks,
                held = dataset.held.chunks.len(),
                of = dataset.held.manifest.chunks.len(),
                total_bytes = dataset.held.manifest.total_bytes,
                "shared dataset traffic"
            );
            total.add(&traffic);
        }
        super::NodeRunSummary {
            fragments: self.fragments_done,
            dataset_traffic: total,
            result_latency: self.result_latency.summary(),
            lease_latency: self.lease_latency.summary(),
        }
    }
}
