//! The burn modules of the three model families, built from burn 0.22.1's `nn` modules, and
//! their forward passes to one row of logits per prediction.
//!
//! Modules are built as skeletons (burn's lazy, uninitialised parameters) and then filled
//! from the flat parameter vector by `network::load_flat`; their field order is the layout
//! order of `ModelSpec::layout`, which a test checks name by name. Dropout is 0 everywhere
//! (a replay must give the same bits), and nothing here draws from burn's global RNG.
//!
//! The transformer's blocks are Corex's own ([`Blocks`]), with the parameters and the forward
//! pass of burn's pre-norm `TransformerEncoder` but a GELU built from `erf`: burn's GPU
//! backends differentiate their fused GELU with the tanh approximation's derivative while its
//! CPU backend uses the exact one, which made honest gradients differ by 2·10⁻⁴ across
//! devices. Through `erf`, every backend differentiates the same exact function.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::attention::{
    MhaInput, MultiHeadAttention, MultiHeadAttentionConfig, generate_autoregressive_mask,
};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Int, Tensor};
use corex_core::model::BYTE_VOCABULARY;
use corex_core::{CnnSpec, MlpSpec, TransformerSpec};

/// `Linear → ReLU → … → Linear` (logits).
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub layers: Vec<Linear>,
}

/// Linear layers for consecutive widths.
fn dense_stack(widths: &[usize], device: &Device) -> Vec<Linear> {
    widths
        .windows(2)
        .map(|pair| LinearConfig::new(pair[0], pair[1]).init(device))
        .collect()
}

/// `relu` between the layers of a dense stack, none after the last.
fn dense_forward(layers: &[Linear], input: Tensor<2>) -> Tensor<2> {
    let last = layers.len().saturating_sub(1);
    let mut x = input;
    for (index, layer) in layers.iter().enumerate() {
        x = layer.forward(x);
        if index < last {
            x = relu(x);
        }
    }
    x
}

impl Mlp {
    pub fn skeleton(spec: &MlpSpec, device: &Device) -> Self {
        let mut widths = vec![spec.input];
        widths.extend_from_slice(&spec.hidden);
        widths.push(spec.classes);
        Self {
            layers: dense_stack(&widths, device),
        }
    }

    /// Logits `[batch, classes]` of a `[batch, input]` batch.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        dense_forward(&self.layers, input)
    }
}

/// `(Conv → ReLU → MaxPool)×k → flatten → (Linear → ReLU)× → Linear`.
#[derive(Module, Debug)]
pub(crate) struct Cnn {
    pub conv: Vec<Conv2d>,
    pub dense: Vec<Linear>,
    pub pool: MaxPool2d,
}

impl Cnn {
    pub fn skeleton(spec: &CnnSpec, device: &Device) -> Self {
        let pad = spec.kernel / 2;
        let mut channels = spec.channels;
        let conv = spec
            .conv
            .iter()
            .map(|&out| {
                let layer = Conv2dConfig::new([channels, out], [spec.kernel, spec.kernel])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(device);
                channels = out;
                layer
            })
            .collect();
        let widths: Vec<usize> = spec.dense_widths().collect();
        Self {
            conv,
            dense: dense_stack(&widths, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Logits `[batch, classes]` of a `[batch, channels, height, width]` batch.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for layer in &self.conv {
            x = self.pool.forward(relu(layer.forward(x)));
        }
        let [batch, channels, height, width] = x.dims();
        dense_forward(&self.dense, x.reshape([batch, channels * height * width]))
    }
}

/// A decoder-only byte-level language model: embeddings, pre-norm causal transformer blocks
/// (an autoregressive mask), a final norm and the head over the 256 byte values.
#[derive(Module, Debug)]
pub(crate) struct ByteLm {
    pub tokens: Embedding,
    pub positions: Embedding,
    pub blocks: Blocks,
    pub norm: LayerNorm,
    pub head: Linear,
}

/// The stack of transformer blocks (module path `blocks.layers.N`, as burn's encoder's).
#[derive(Module, Debug)]
pub(crate) struct Blocks {
    pub layers: Vec<Block>,
}

/// One pre-norm block: `x + attention(norm_2(x))`, then `x + feed_forward(norm_1(x))`. The
/// fields, their names and order are those of burn's `TransformerEncoderLayer`.
#[derive(Module, Debug)]
pub(crate) struct Block {
    pub mha: MultiHeadAttention,
    pub pwff: FeedForward,
    pub norm_1: LayerNorm,
    pub norm_2: LayerNorm,
}

/// `linear_outer(gelu(linear_inner(x)))`.
#[derive(Module, Debug)]
pub(crate) struct FeedForward {
    pub linear_inner: Linear,
    pub linear_outer: Linear,
}

impl Blocks {
    fn skeleton(spec: &TransformerSpec, device: &Device) -> Self {
        let layers = (0..spec.layers)
            .map(|_| Block {
                mha: MultiHeadAttentionConfig::new(spec.width, spec.heads)
                    .with_dropout(0.0)
                    .init(device),
                pwff: FeedForward {
                    linear_inner: LinearConfig::new(spec.width, spec.ff_width()).init(device),
                    linear_outer: LinearConfig::new(spec.ff_width(), spec.width).init(device),
                },
                norm_1: LayerNormConfig::new(spec.width).init(device),
                norm_2: LayerNormConfig::new(spec.width).init(device),
            })
            .collect();
        Self { layers }
    }

    fn forward(&self, input: Tensor<3>, mask: &Tensor<3, Bool>) -> Tensor<3> {
        self.layers
            .iter()
            .fold(input, |x, block| block.forward(x, mask.clone()))
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, mask: Tensor<3, Bool>) -> Tensor<3> {
        let attended = self
            .mha
            .forward(MhaInput::self_attn(self.norm_2.forward(x.clone())).mask_attn(mask))
            .context;
        let x = x + attended;
        let fed = self.pwff.forward(self.norm_1.forward(x.clone()));
        x + fed
    }
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.linear_outer
            .forward(exact_gelu(self.linear_inner.forward(x)))
    }
}

/// `x · (1 + erf(x / √2)) / 2`: the values of burn's GELU, bit for bit on the CPU, and a
/// derivative that is exact on every backend.
fn exact_gelu(x: Tensor<3>) -> Tensor<3> {
    let cdf = x
        .clone()
        .div_scalar(std::f32::consts::SQRT_2)
        .erf()
        .add_scalar(1.0);
    (x * cdf).div_scalar(2.0)
}

impl ByteLm {
    pub fn skeleton(spec: &TransformerSpec, device: &Device) -> Self {
        Self {
            tokens: EmbeddingConfig::new(BYTE_VOCABULARY, spec.width).init(device),
            positions: EmbeddingConfig::new(spec.context, spec.width).init(device),
            blocks: Blocks::skeleton(spec, device),
            norm: LayerNormConfig::new(spec.width).init(device),
            head: LinearConfig::new(spec.width, BYTE_VOCABULARY).init(device),
        }
    }

    /// Next-byte logits `[batch × length, 256]` (row `b × length + t` predicts the byte after
    /// position `t` of window `b`) of a `[batch, length]` batch of byte ids, `length ≤ context`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [batch, length] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..length as i64, &device).reshape([1, length]);
        let x = self.tokens.forward(tokens) + self.positions.forward(positions);
        let mask = generate_autoregressive_mask(batch, length, &device);
        let x = self.blocks.forward(x, &mask);
        let logits = self.head.forward(self.norm.forward(x));
        logits.reshape([batch * length, BYTE_VOCABULARY])
    }
}
