//! Standardizing tabular features with statistics fitted on the training split only, so that
//! features spanning many orders of magnitude train as well as hand-scaled ones.

use corex_core::Standardization;

use crate::dataset::{Dataset, Samples};
use crate::error::MlError;

/// Fits per-feature mean and standard deviation over the rows `train` of a tabular dataset,
/// accumulated in `f64` in index order (the same bits on every machine). A constant feature
/// gets scale 1.
pub fn fit_standardization(data: &Dataset, train: &[u32]) -> Result<Standardization, MlError> {
    let Samples::Tabular {
        features,
        feature_count,
        ..
    } = &data.samples
    else {
        return Err(MlError::Dataset(
            "only tabular features are standardized".into(),
        ));
    };
    data.check_indices(train)?;
    let width = *feature_count;
    let rows = train.len() as f64;
    let mut sum = vec![0f64; width];
    let mut square = vec![0f64; width];
    for &index in train {
        let row = &features[index as usize * width..(index as usize + 1) * width];
        for ((sum, square), &value) in sum.iter_mut().zip(&mut square).zip(row) {
            *sum += f64::from(value);
            *square += f64::from(value) * f64::from(value);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|total| total / rows).collect();
    let scale = square
        .iter()
        .zip(&mean)
        .map(|(square, mean)| {
            let deviation = (square / rows - mean * mean).max(0.0).sqrt();
            if deviation > 1e-12 && deviation.is_finite() {
                deviation as f32
            } else {
                1.0
            }
        })
        .collect();
    Ok(Standardization {
        mean: mean.iter().map(|&value| value as f32).collect(),
        scale,
    })
}

/// The tabular dataset with every row standardized by `statistics`.
pub fn standardize(data: &Dataset, statistics: &Standardization) -> Result<Dataset, MlError> {
    let Samples::Tabular {
        features,
        feature_count,
        labels,
        class_count,
    } = &data.samples
    else {
        return Err(MlError::Dataset(
            "only tabular features are standardized".into(),
        ));
    };
    if statistics.features() != *feature_count || statistics.scale.len() != *feature_count {
        return Err(MlError::Shape(format!(
            "statistics for {} features, the dataset has {feature_count}",
            statistics.features()
        )));
    }
    let mut scaled = features.clone();
    for row in scaled.chunks_mut(*feature_count) {
        statistics.apply_row(row);
    }
    Dataset::from_parts(scaled, labels.clone(), *feature_count, *class_count)
}
