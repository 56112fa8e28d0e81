//! Feature standardization statistics: what a job fitted on its training split, kept in its
//! report and its exported model, and applied again to any data the model later sees.

use serde::{Deserialize, Serialize};

/// `x′ = (x − mean) / scale` per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    pub mean: Vec<f32>,
    /// The training split's standard deviation, 1 for a constant feature.
    pub scale: Vec<f32>,
}

impl Standardization {
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes one row in place; rows of another width are left as they are and
    /// reported (`false`).
    pub fn apply_row(&self, row: &mut [f32]) -> bool {
        if row.len() != self.mean.len() || row.len() != self.scale.len() {
            return false;
        }
        for ((value, mean), scale) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
            *value = (*value - mean) / scale;
        }
        true
    }
}
