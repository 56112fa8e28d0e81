//! Getting a lease's model version: the one held already, or an earlier one with the last
//! rounds' compressed updates applied in turn (checked against the leased version's hash), or
//! the whole model fetched by its manifest.

use corex_core::compression::CompressionSpec;
use corex_core::model_update::{self, MAX_UPDATE_CHAIN, ModelUpdate};
use corex_core::tensor::f32s_to_bytes;

use super::*;
use crate::telemetry::ModelObtained;

/// Model versions a node keeps: the round's and one more (an audit's checkpoint, or the
/// version before).
pub(super) const HELD_MODELS: usize = 2;

impl NodeAgent {
    /// The parameters of model version `hash` (whose manifest is `manifest`), given the
    /// lease's `updates` and the job's `download` policy. Updates that do not give exactly
    /// `hash` are logged and the model fetched whole.
    pub(super) async fn model_version(
        &mut self,
        hash: &Hash,
        manifest: &Manifest,
        updates: &[ModelUpdate],
        download: &CompressionSpec,
    ) -> Result<Arc<Vec<f32>>, NodeError> {
        if let Some(parameters) = self.held(hash) {
            return Ok(parameters);
        }
        // The updates from the newest held version one of them starts from.
        let chain = updates
            .iter()
            .enumerate()
            .rev()
            .find_map(|(start, update)| {
                let (_, base) = self.models.iter().find(|(held, _)| *held == update.from)?;
                Some((&updates[start..], base.clone()))
            });
        if let Some((chain, base)) = chain.filter(|_| updates.len() <= MAX_UPDATE_CHAIN) {
            match self
                .apply_updates(hash, manifest, chain, download, base)
                .await
            {
                Ok(parameters) => {
                    let bytes: u64 = chain.iter().map(|update| update.delta.total_bytes).sum();
                    self.config
                        .telemetry
                        .model_obtained(ModelObtained::Updates, bytes);
                    tracing::debug!(model = %hash.short(), updates = chain.len(), bytes, "model version made from the held one and the rounds' updates");
                    return Ok(self.hold(*hash, parameters));
                }
                Err(error) => {
                    tracing::warn!(model = %hash.short(), %error, "the round's model update did not give the leased version; fetching it whole");
                }
            }
        }
        let bytes = self.client.fetch_chunks(hash, manifest).await?;
        self.config
            .telemetry
            .model_obtained(ModelObtained::Whole, bytes.len() as u64);
        let parameters = bytes_to_f32s(&bytes).map_err(|_| NodeError::BadModel(*hash))?;
        Ok(self.hold(*hash, parameters))
    }

    /// Version `hash`, if held (it becomes the newest).
    fn held(&mut self, hash: &Hash) -> Option<Arc<Vec<f32>>> {
        let at = self.models.iter().position(|(held, _)| held == hash)?;
        let entry = self.models.remove(at);
        let parameters = entry.1.clone();
        self.models.insert(0, entry);
        Some(parameters)
    }

    /// Keeps version `hash` as the newest, letting the oldest go past `HELD_MODELS`.
    fn hold(&mut self, hash: Hash, parameters: Vec<f32>) -> Arc<Vec<f32>> {
        let parameters = Arc::new(parameters);
        self.models.insert(0, (hash, parameters.clone()));
        self.models.truncate(HELD_MODELS);
        parameters
    }

    /// `base` with `chain` applied in turn, if that is version `hash`. Each update's size is
    /// checked against the job's policy before anything is fetched.
    async fn apply_updates(
        &self,
        hash: &Hash,
        manifest: &Manifest,
        chain: &[ModelUpdate],
        download: &CompressionSpec,
        base: Arc<Vec<f32>>,
    ) -> Result<Vec<f32>, NodeError> {
        let refused = |reason: String| NodeError::ModelUpdate {
            model: *hash,
            reason,
        };
        let expected = download.encoded_len(base.len()) as u64;
        let mut deltas = Vec::with_capacity(chain.len());
        for update in chain {
            if download.is_none() || update.delta.total_bytes != expected {
                return Err(refused(format!(
                    "an update of {} bytes, where the job's download policy {download:?} makes {expected}",
                    update.delta.total_bytes
                )));
            }
            deltas.push(
                self.client
                    .fetch_chunks(&update.delta.hash, &update.delta)
                    .await?,
            );
        }
        let (download, chunk_size) = (*download, manifest.chunk_size as usize);
        let made = tokio::task::spawn_blocking(move || {
            let mut parameters = base.as_ref().clone();
            for delta in &deltas {
                parameters = model_update::apply(&parameters, delta, &download)?;
            }
            let name = Manifest::of(&f32s_to_bytes(&parameters), chunk_size).hash;
            Ok::<_, corex_core::DecodeError>((parameters, name))
        })
        .await
        .map_err(|error| refused(error.to_string()))?;
        let (parameters, name) = made.map_err(|error| refused(error.to_string()))?;
        if name != *hash {
            return Err(refused(format!(
                "the updated parameters are version {}",
                name.short()
            )));
        }
        Ok(parameters)
    }
}
