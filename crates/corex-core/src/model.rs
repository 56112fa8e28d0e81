//! Model families a job may ask for, and the one parameter layout they share.
//!
//! A job names a built-in family and its sizes, never code: an MLP classifier, a small CNN
//! for images, or a decoder-only byte-level transformer language model. Every family's
//! parameters travel as one flat `f32` vector in the order of [`ModelSpec::layout`]: one
//! entry per tensor, in the module's field order (forward order), each tensor row-major
//! under its module path (`layers.0.weight`), which is also its safetensors name. Sizes
//! (parameters, FLOPs, activations) are computed here with saturating integers and without
//! allocating, so a hostile spec is priced before anything is built.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Largest layer width (features, channels, model width) a job may ask for.
pub const MAX_LAYER_WIDTH: usize = 8192;
/// Largest parameter count a job may ask for (about 256 MiB of f32 weights).
pub const MAX_PARAMETERS: usize = 64 * 1024 * 1024;
/// Most layers of any family (hidden plus output, convolutions, transformer blocks).
pub const MAX_MODEL_LAYERS: usize = 64;
/// Byte values a byte-level language model predicts over.
pub const BYTE_VOCABULARY: usize = 256;
/// Longest context of a byte-level language model.
pub const MAX_CONTEXT: usize = 4096;
/// Largest image side a CNN may ask for.
pub const MAX_IMAGE_SIDE: usize = 1024;

/// The model of a job, by family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelSpec {
    Mlp(MlpSpec),
    Cnn(CnnSpec),
    Transformer(TransformerSpec),
}

/// A multilayer perceptron classifier: `input → hidden[0] → … → classes`, ReLU between layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpSpec {
    /// Number of input features per sample.
    pub input: usize,
    /// Widths of the hidden layers, in order; may be empty (softmax regression).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Number of output classes.
    pub classes: usize,
}

/// A convolutional image classifier: for each entry of `conv`, a `kernel × kernel`
/// convolution to that many channels (stride 1, zero padding `kernel / 2`, so the size is
/// kept), ReLU and a 2 × 2 max pool (stride 2, sizes rounded down); then the flattened
/// `[channels, height, width]` map through ReLU dense layers of `hidden` widths to `classes`
/// logits. No batch normalisation: a fragment's gradient must not depend on how a batch was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnnSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Output channels of each convolution block, in order.
    pub conv: Vec<usize>,
    /// Odd kernel side of every convolution.
    #[serde(default = "default_kernel")]
    pub kernel: usize,
    #[serde(default)]
    pub hidden: Vec<usize>,
    pub classes: usize,
}

fn default_kernel() -> usize {
    3
}

/// A decoder-only, causal, byte-level language model: token and position embeddings of
/// `width`, `layers` pre-norm blocks (multi-head causal self-attention with `heads` heads, then
/// a GELU MLP of `ff` inner width, each with a residual), a final layer norm and a linear head
/// over the 256 byte values. A sample is a window of `context + 1` bytes: the model reads the
/// first `context` and predicts each next byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformerSpec {
    pub layers: usize,
    pub width: usize,
    pub heads: usize,
    pub context: usize,
    /// Inner width of each block's MLP (default `4 × width`).
    #[serde(default)]
    pub ff: Option<usize>,
}

impl TransformerSpec {
    pub fn ff_width(&self) -> usize {
        self.ff.unwrap_or(self.width.saturating_mul(4))
    }
}

/// How one parameter tensor starts (Corex's seeded initialisation draws in layout order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// Uniform in `[-bound, bound)`.
    Uniform {
        bound: f64,
    },
    Ones,
    Zeros,
}

/// One tensor of the flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamTensor {
    /// The module path, as in the safetensors export (`blocks.layers.0.mha.query.weight`).
    pub name: String,
    pub shape: Vec<usize>,
    pub init: ParamInit,
}

impl ParamTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `U(±1/√fan_in)`, PyTorch's `nn.Linear` and `nn.Conv2d` default.
fn fan_in_uniform(fan_in: usize) -> ParamInit {
    ParamInit::Uniform {
        bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
    }
}

/// Embedding tables start small: uniform with standard deviation 0.02 (GPT-2's).
const EMBEDDING_INIT: ParamInit = ParamInit::Uniform {
    bound: 0.034_641_016, // 0.02 × √3
};

fn push_linear(layout: &mut Vec<ParamTensor>, prefix: &str, fan_in: usize, fan_out: usize) {
    let init = fan_in_uniform(fan_in);
    layout.push(ParamTensor {
        name: format!("{prefix}.weight"),
        shape: vec![fan_in, fan_out],
        init,
    });
    layout.push(ParamTensor {
        name: format!("{prefix}.bias"),
        shape: vec![fan_out],
        init,
    });
}

fn push_norm(layout: &mut Vec<ParamTensor>, prefix: &str, width: usize) {
    for (name, init) in [("gamma", ParamInit::Ones), ("beta", ParamInit::Zeros)] {
        layout.push(ParamTensor {
            name: format!("{prefix}.{name}"),
            shape: vec![width],
            init,
        });
    }
}

/// Saturating `Σ fan_in × fan_out (+ fan_out)` over consecutive widths.
fn dense_counts(widths: impl Iterator<Item = usize> + Clone) -> (u64, u64) {
    let widths = widths.map(|width| width as u64);
    widths.clone().zip(widths.skip(1)).fold(
        (0u64, 0u64),
        |(parameters, macs), (fan_in, fan_out)| {
            let product = fan_in.saturating_mul(fan_out);
            (
                parameters.saturating_add(product).saturating_add(fan_out),
                macs.saturating_add(product),
            )
        },
    )
}

impl MlpSpec {
    fn widths(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
    }

    /// `(fan_in, fan_out)` of every linear layer, in forward order.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        let widths: Vec<usize> = self.widths().collect();
        widths.windows(2).map(|pair| (pair[0], pair[1])).collect()
    }
}

impl CnnSpec {
    /// `(in_channels, out_channels, height, width)` at each convolution (before its pool),
    /// then the flattened width after the last pool. Saturating, allocation-free.
    fn conv_blocks(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + Clone + '_ {
        let mut state = (self.channels, self.height, self.width);
        self.conv.iter().map(move |&out| {
            let (input, height, width) = state;
            state = (out, height / 2, width / 2);
            (input, out, height, width)
        })
    }

    /// `(channels, height, width)` of the map the dense head flattens.
    fn flattened(&self) -> (usize, usize, usize) {
        let halvings = u32::try_from(self.conv.len()).unwrap_or(u32::MAX);
        let shrink = |side: usize| side.checked_shr(halvings).unwrap_or(0);
        (
            self.conv.last().copied().unwrap_or(self.channels),
            shrink(self.height),
            shrink(self.width),
        )
    }

    fn flat_width(&self) -> usize {
        let (channels, height, width) = self.flattened();
        channels.saturating_mul(height).saturating_mul(width)
    }

    /// Widths of the dense head: the flattened map, each hidden layer, the classes.
    pub fn dense_widths(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        std::iter::once(self.flat_width())
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
    }

    fn kernel_area(&self) -> u64 {
        (self.kernel as u64).saturating_mul(self.kernel as u64)
    }
}

impl ModelSpec {
    /// An MLP spec.
    pub fn mlp(input: usize, hidden: Vec<usize>, classes: usize) -> Self {
        Self::Mlp(MlpSpec {
            input,
            hidden,
            classes,
        })
    }

    /// The family's name in specs and tables.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Cnn(_) => "cnn",
            Self::Transformer(_) => "transformer",
        }
    }

    /// Width of one row of logits: the classes, or the 256 byte values.
    pub fn classes(&self) -> usize {
        match self {
            Self::Mlp(mlp) => mlp.classes,
            Self::Cnn(cnn) => cnn.classes,
            Self::Transformer(_) => BYTE_VOCABULARY,
        }
    }

    /// Values per sample of a feature-vector model (MLP features, CNN pixels); `None` for the
    /// language model, whose samples are byte windows.
    pub fn feature_width(&self) -> Option<usize> {
        match self {
            Self::Mlp(mlp) => Some(mlp.input),
            Self::Cnn(cnn) => Some(
                cnn.channels
                    .saturating_mul(cnn.height)
                    .saturating_mul(cnn.width),
            ),
            Self::Transformer(_) => None,
        }
    }

    /// Bytes per sample window of the language model (`context + 1`).
    pub fn window(&self) -> Option<usize> {
        match self {
            Self::Transformer(lm) => Some(lm.context.saturating_add(1)),
            _ => None,
        }
    }

    /// Layers the budget counts: linear layers, convolutions plus dense layers, or blocks.
    pub fn layer_count(&self) -> u64 {
        let count = match self {
            Self::Mlp(mlp) => mlp.hidden.len().saturating_add(1),
            Self::Cnn(cnn) => cnn
                .conv
                .len()
                .saturating_add(cnn.hidden.len())
                .saturating_add(1),
            Self::Transformer(lm) => lm.layers,
        };
        count as u64
    }

    /// Trainable scalars (saturating, allocation-free).
    pub fn parameter_count_u64(&self) -> u64 {
        self.sizes().0
    }

    /// Trainable scalars of a spec that passed [`ModelSpec::validate`].
    pub fn parameter_count(&self) -> usize {
        usize::try_from(self.parameter_count_u64()).unwrap_or(usize::MAX)
    }

    /// Multiply-accumulates of one forward pass over one sample (a whole window for the
    /// language model).
    pub fn forward_macs_per_sample(&self) -> u64 {
        self.sizes().1
    }

    /// FLOPs of one training sample: forward (2 per MAC) plus backward (4 per MAC).
    pub fn train_flops_per_sample(&self) -> u64 {
        self.forward_macs_per_sample().saturating_mul(6)
    }

    /// Activation values one sample keeps for the backward pass (the memory budget's count).
    pub fn activations_per_sample(&self) -> u64 {
        self.sizes().2
    }

    /// `(parameters, forward MACs per sample, activations per sample)`, saturating.
    fn sizes(&self) -> (u64, u64, u64) {
        match self {
            Self::Mlp(mlp) => {
                let (parameters, macs) = dense_counts(mlp.widths());
                let activations = mlp.widths().map(|w| w as u64).fold(0, u64::saturating_add);
                (parameters, macs, activations)
            }
            Self::Cnn(cnn) => {
                let (mut parameters, mut macs, mut activations) = (0u64, 0u64, 0u64);
                for (input, output, height, width) in cnn.conv_blocks() {
                    let filter = (input as u64).saturating_mul(cnn.kernel_area());
                    let weights = filter.saturating_mul(output as u64);
                    let pixels = (height as u64).saturating_mul(width as u64);
                    parameters = parameters
                        .saturating_add(weights)
                        .saturating_add(output as u64);
                    macs = macs.saturating_add(weights.saturating_mul(pixels));
                    // The convolution's output, its ReLU and the pooled map.
                    activations = activations
                        .saturating_add(pixels.saturating_mul(output as u64).saturating_mul(3));
                }
                let (dense_parameters, dense_macs) = dense_counts(cnn.dense_widths());
                let dense_activations = cnn
                    .dense_widths()
                    .map(|w| w as u64)
                    .fold(0, u64::saturating_add);
                (
                    parameters.saturating_add(dense_parameters),
                    macs.saturating_add(dense_macs),
                    activations.saturating_add(dense_activations),
                )
            }
            Self::Transformer(lm) => {
                let (w, ff, n) = (lm.width as u64, lm.ff_width() as u64, lm.context as u64);
                let vocabulary = BYTE_VOCABULARY as u64;
                let layers = lm.layers as u64;
                let attention = w.saturating_mul(w).saturating_add(w).saturating_mul(4);
                let mlp = w
                    .saturating_mul(ff)
                    .saturating_mul(2)
                    .saturating_add(ff)
                    .saturating_add(w);
                let block = attention
                    .saturating_add(mlp)
                    .saturating_add(w.saturating_mul(4));
                let parameters = vocabulary
                    .saturating_add(n)
                    .saturating_mul(w)
                    .saturating_add(layers.saturating_mul(block))
                    .saturating_add(w.saturating_mul(2))
                    .saturating_add(w.saturating_mul(vocabulary).saturating_add(vocabulary));
                // Per token: the projections and the MLP of each block, attention scores and
                // mixing over the context, and the head.
                let per_token_block = w
                    .saturating_mul(w)
                    .saturating_mul(4)
                    .saturating_add(w.saturating_mul(ff).saturating_mul(2))
                    .saturating_add(n.saturating_mul(w).saturating_mul(2));
                let per_token = layers
                    .saturating_mul(per_token_block)
                    .saturating_add(w.saturating_mul(vocabulary));
                let heads = lm.heads as u64;
                let per_token_activations = layers
                    .saturating_mul(
                        w.saturating_mul(10)
                            .saturating_add(ff.saturating_mul(2))
                            .saturating_add(heads.saturating_mul(n).saturating_mul(2)),
                    )
                    .saturating_add(vocabulary.saturating_mul(2));
                (
                    parameters,
                    n.saturating_mul(per_token),
                    n.saturating_mul(per_token_activations),
                )
            }
        }
    }

    /// The flat parameter layout: every tensor in order, with its safetensors name, shape and
    /// initialisation. Only for a spec that passed [`ModelSpec::validate`].
    pub fn layout(&self) -> Vec<ParamTensor> {
        let mut layout = Vec::new();
        match self {
            Self::Mlp(mlp) => {
                for (index, (fan_in, fan_out)) in mlp.layer_shapes().into_iter().enumerate() {
                    push_linear(&mut layout, &format!("layers.{index}"), fan_in, fan_out);
                }
            }
            Self::Cnn(cnn) => {
                for (index, (input, output, _, _)) in cnn.conv_blocks().enumerate() {
                    let init = fan_in_uniform(input * cnn.kernel * cnn.kernel);
                    layout.push(ParamTensor {
                        name: format!("conv.{index}.weight"),
                        shape: vec![output, input, cnn.kernel, cnn.kernel],
                        init,
                    });
                    layout.push(ParamTensor {
                        name: format!("conv.{index}.bias"),
                        shape: vec![output],
                        init,
                    });
                }
                let widths: Vec<usize> = cnn.dense_widths().collect();
                for (index, pair) in widths.windows(2).enumerate() {
                    push_linear(&mut layout, &format!("dense.{index}"), pair[0], pair[1]);
                }
            }
            Self::Transformer(lm) => {
                let (w, ff) = (lm.width, lm.ff_width());
                for (name, rows) in [("tokens", BYTE_VOCABULARY), ("positions", lm.context)] {
                    layout.push(ParamTensor {
                        name: format!("{name}.weight"),
                        shape: vec![rows, w],
                        init: EMBEDDING_INIT,
                    });
                }
                for layer in 0..lm.layers {
                    let block = format!("blocks.layers.{layer}");
                    for projection in ["query", "key", "value", "output"] {
                        push_linear(&mut layout, &format!("{block}.mha.{projection}"), w, w);
                    }
                    push_linear(&mut layout, &format!("{block}.pwff.linear_inner"), w, ff);
                    push_linear(&mut layout, &format!("{block}.pwff.linear_outer"), ff, w);
                    push_norm(&mut layout, &format!("{block}.norm_1"), w);
                    push_norm(&mut layout, &format!("{block}.norm_2"), w);
                }
                push_norm(&mut layout, "norm", w);
                push_linear(&mut layout, "head", w, BYTE_VOCABULARY);
            }
        }
        layout
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |reason: String| Err(SpecError::Invalid(reason));
        let check_widths = |widths: &mut dyn Iterator<Item = usize>| {
            for width in widths {
                if width == 0 || width > MAX_LAYER_WIDTH {
                    return invalid(format!(
                        "layer width {width} is outside 1..={MAX_LAYER_WIDTH}"
                    ));
                }
            }
            Ok(())
        };
        if self.layer_count() as usize > MAX_MODEL_LAYERS {
            return invalid(format!(
                "the model has {} layers, above the limit of {MAX_MODEL_LAYERS}",
                self.layer_count()
            ));
        }
        match self {
            Self::Mlp(mlp) => {
                if mlp.input == 0 || mlp.classes < 2 {
                    return invalid(format!(
                        "model needs at least one input and two classes (got input {}, classes {})",
                        mlp.input, mlp.classes
                    ));
                }
                check_widths(&mut mlp.widths())?;
            }
            Self::Cnn(cnn) => {
                if cnn.classes < 2 || cnn.conv.is_empty() {
                    return invalid("a cnn needs at least one convolution and two classes".into());
                }
                if cnn.kernel % 2 == 0 || !(1..=11).contains(&cnn.kernel) {
                    return invalid(format!(
                        "kernel {} is not an odd size in 1..=11",
                        cnn.kernel
                    ));
                }
                if !(1..=MAX_IMAGE_SIDE).contains(&cnn.height)
                    || !(1..=MAX_IMAGE_SIDE).contains(&cnn.width)
                {
                    return invalid(format!("image sides must be in 1..={MAX_IMAGE_SIDE}"));
                }
                let (_, height, width) = cnn.flattened();
                if height == 0 || width == 0 {
                    return invalid(format!(
                        "{} pooled convolutions shrink a {}×{} image to nothing",
                        cnn.conv.len(),
                        cnn.height,
                        cnn.width
                    ));
                }
                check_widths(
                    &mut std::iter::once(cnn.channels)
                        .chain(cnn.conv.iter().copied())
                        .chain(cnn.hidden.iter().copied())
                        .chain(std::iter::once(cnn.classes)),
                )?;
                if cnn.flat_width() > MAX_PARAMETERS {
                    return invalid("the flattened feature map is too wide".into());
                }
            }
            Self::Transformer(lm) => {
                if lm.layers == 0 {
                    return invalid("a transformer needs at least one layer".into());
                }
                check_widths(&mut [lm.width, lm.ff_width()].into_iter())?;
                if lm.heads == 0 || lm.width % lm.heads != 0 {
                    return invalid(format!(
                        "width {} is not a multiple of heads {}",
                        lm.width, lm.heads
                    ));
                }
                if !(1..=MAX_CONTEXT).contains(&lm.context) {
                    return invalid(format!(
                        "context {} is outside 1..={MAX_CONTEXT}",
                        lm.context
                    ));
                }
            }
        }
        if self.parameter_count_u64() > MAX_PARAMETERS as u64 {
            return invalid(format!(
                "model has {} parameters, above the limit of {MAX_PARAMETERS}",
                self.parameter_count_u64()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
