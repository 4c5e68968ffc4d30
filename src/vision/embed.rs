//! The embedder: runs the network its [`EmbedderSpec`] describes on an aligned chip and
//! returns an L2-normalised embedding of the spec's dimension.

use image::RgbImage;

use super::embedder_spec::{EmbedderSpec, InputNormalisation};
use super::Error;
use crate::runtime::Model;

/// Dimension of the shipped embedder (dlib ResNet).
pub const EMBEDDING_DIM: usize = 128;

/// An L2-normalised face embedding (its length is the embedder's output dimension).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Normalises `raw` to unit length; `None` for an empty, zero or non-finite vector.
    pub fn from_raw(raw: &[f32]) -> Option<Embedding> {
        if raw.is_empty() || raw.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm <= f32::EPSILON {
            return None;
        }
        Some(Embedding(raw.iter().map(|v| v / norm).collect()))
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity (both are unit vectors), -1..1. Embeddings of different
    /// dimensions come from different models and never match: -1.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return -1.0;
        }
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    pub fn from_le_bytes(bytes: &[u8]) -> Option<Embedding> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
            return None;
        }
        let out = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some(Embedding(out))
    }
}

/// Runs the embedder on one chip; with `flip`, averages with the mirrored chip's
/// embedding (measured on the LFW development pairs: docs/accuracy.md). The chip is
/// converted to the input `spec` describes (layout, normalisation).
pub fn embed(
    model: &mut Model,
    chip: &RgbImage,
    flip: bool,
    spec: &EmbedderSpec,
) -> Result<Embedding, Error> {
    normalised(&embed_sum(model, chip, flip, spec)?)
}

/// The raw (not normalised) embedder output of one chip, plus the mirrored chip's with
/// `flip`: the part of one chip in an average over several (flip, test-time chips).
pub(super) fn embed_sum(
    model: &mut Model,
    chip: &RgbImage,
    flip: bool,
    spec: &EmbedderSpec,
) -> Result<Vec<f32>, Error> {
    let mut sum = run_once(model, chip, false, spec)?;
    if flip {
        let mirrored = run_once(model, chip, true, spec)?;
        add_into(&mut sum, &mirrored);
    }
    Ok(sum)
}

/// `sum += part`, element by element.
pub(super) fn add_into(sum: &mut [f32], part: &[f32]) {
    for (s, p) in sum.iter_mut().zip(part) {
        *s += p;
    }
}

/// The L2-normalised embedding of a raw output or a sum of raw outputs.
pub(super) fn normalised(raw: &[f32]) -> Result<Embedding, Error> {
    Embedding::from_raw(raw)
        .ok_or_else(|| Error::ModelOutput("embedding is zero or not finite".into()))
}

/// Per channel `(scale, offset)` so that `value = byte * scale + offset`.
fn affine(chip: &RgbImage, spec: &EmbedderSpec) -> ([f32; 3], [f32; 3]) {
    match &spec.normalisation {
        InputNormalisation::ScaleOffset { scale, offset } => (*scale, *offset),
        InputNormalisation::PerImageStandardisation => {
            let raw = chip.as_raw();
            let n = raw.len().max(1) as f64;
            let (sum, sq) = raw.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
                let v = f64::from(v);
                (s + v, q + v * v)
            });
            let mean = sum / n;
            let std = (sq / n - mean * mean).max(0.0).sqrt().max(1.0 / n.sqrt());
            let scale = (1.0 / std) as f32;
            ([scale; 3], [(-mean / std) as f32; 3])
        }
    }
}

fn run_once(
    model: &mut Model,
    chip: &RgbImage,
    mirrored: bool,
    spec: &EmbedderSpec,
) -> Result<Vec<f32>, Error> {
    let (w, h) = (chip.width() as usize, chip.height() as usize);
    let (scale, offset) = affine(chip, spec);
    let source = spec.input_layout.source_channels();
    // Where value (x, y, c) goes: NHWC interleaves the channels, NCHW stores one plane
    // per channel.
    let (x_step, c_step) = if spec.input_layout.channels_first() {
        (1, w * h)
    } else {
        (3, 1)
    };
    let row_step = w * x_step;
    let output = spec.output_index(model).map_err(Error::ModelOutput)?;
    let mut input = model.input_values_mut(0)?;
    if input.len() != w * h * 3 {
        return Err(Error::ModelOutput(format!(
            "embedder input holds {} values, chip has {}",
            input.len(),
            w * h * 3
        )));
    }
    input.fill(|values| {
        for (y, row) in chip.as_raw().chunks_exact(w * 3).enumerate() {
            for (x, px) in row.chunks_exact(3).enumerate() {
                let x = if mirrored { w - 1 - x } else { x };
                let at = y * row_step + x * x_step;
                for c in 0..3 {
                    values[at + c * c_step] = f32::from(px[source[c]]) * scale[c] + offset[c];
                }
            }
        }
    });
    model.run()?;
    let out = model.output_dequantized(output)?;
    if out.len() != spec.output_dim {
        return Err(Error::ModelOutput(format!(
            "embedding has {} values, described: {}",
            out.len(),
            spec.output_dim
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length_and_round_trip_bytes() {
        let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|i| i as f32 - 60.0).collect();
        let e = Embedding::from_raw(&raw).unwrap();
        assert!((e.cosine(&e) - 1.0).abs() < 1e-5);
        assert_eq!(Embedding::from_le_bytes(&e.to_le_bytes()), Some(e));
    }

    #[test]
    fn zero_and_nan_vectors_are_rejected() {
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_DIM]).is_none());
        let mut raw = [1.0; EMBEDDING_DIM];
        raw[3] = f32::NAN;
        assert!(Embedding::from_raw(&raw).is_none());
        assert!(Embedding::from_raw(&[]).is_none());
    }

    #[test]
    fn embeddings_of_different_dimensions_never_match() {
        let a = Embedding::from_raw(&[1.0; 128]).unwrap();
        let b = Embedding::from_raw(&[1.0; 512]).unwrap();
        assert_eq!(a.cosine(&b), -1.0);
    }

    #[test]
    fn per_image_standardisation_gives_zero_mean_unit_variance() {
        let chip = RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 20) as u8, 7]));
        let mut spec = EmbedderSpec::dlib();
        spec.normalisation = InputNormalisation::PerImageStandardisation;
        let (scale, offset) = affine(&chip, &spec);
        let values: Vec<f32> = chip
            .as_raw()
            .iter()
            .map(|&v| f32::from(v) * scale[0] + offset[0])
            .collect();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
}
