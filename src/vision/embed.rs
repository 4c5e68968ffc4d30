//! The embedder: dlib's ResNet (128-d), fed an aligned RGB chip in 0..255.

use image::RgbImage;

use super::Error;
use crate::runtime::Model;

pub const EMBEDDING_DIM: usize = 128;

/// An L2-normalised face embedding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Embedding(pub [f32; EMBEDDING_DIM]);

impl Default for Embedding {
    fn default() -> Self {
        Embedding([0.0; EMBEDDING_DIM])
    }
}

impl Embedding {
    /// Normalises `raw` to unit length; `None` for a zero or non-finite vector.
    pub fn from_raw(raw: &[f32]) -> Option<Embedding> {
        if raw.len() != EMBEDDING_DIM || raw.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm <= f32::EPSILON {
            return None;
        }
        let mut out = [0.0; EMBEDDING_DIM];
        for (o, v) in out.iter_mut().zip(raw) {
            *o = v / norm;
        }
        Some(Embedding(out))
    }

    /// Cosine similarity (both are unit vectors), -1..1.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    pub fn from_le_bytes(bytes: &[u8]) -> Option<Embedding> {
        if bytes.len() != EMBEDDING_DIM * 4 {
            return None;
        }
        let mut out = [0.0; EMBEDDING_DIM];
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Some(Embedding(out))
    }
}

/// Runs the embedder on one chip; with `flip`, averages with the mirrored chip's
/// embedding (measured on the LFW development pairs: docs/accuracy.md).
pub fn embed(model: &mut Model, chip: &RgbImage, flip: bool) -> Result<Embedding, Error> {
    let mut sum = run_once(model, chip, false)?;
    if flip {
        let mirrored = run_once(model, chip, true)?;
        for (s, m) in sum.iter_mut().zip(mirrored) {
            *s += m;
        }
    }
    Embedding::from_raw(&sum)
        .ok_or_else(|| Error::ModelOutput("embedding is zero or not finite".into()))
}

fn run_once(model: &mut Model, chip: &RgbImage, mirrored: bool) -> Result<Vec<f32>, Error> {
    let (w, h) = chip.dimensions();
    let input = model.input_f32_mut(0)?;
    if input.len() != (w * h * 3) as usize {
        return Err(Error::ModelOutput(format!(
            "embedder input holds {} values, chip has {}",
            input.len(),
            w * h * 3
        )));
    }
    let raw = chip.as_raw();
    let row = (w * 3) as usize;
    for y in 0..h as usize {
        let src = &raw[y * row..(y + 1) * row];
        let dst = &mut input[y * row..(y + 1) * row];
        if mirrored {
            for (x, px) in src.chunks_exact(3).enumerate() {
                let o = (w as usize - 1 - x) * 3;
                dst[o] = f32::from(px[0]);
                dst[o + 1] = f32::from(px[1]);
                dst[o + 2] = f32::from(px[2]);
            }
        } else {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32::from(s);
            }
        }
    }
    model.run()?;
    let out = model.output_dequantized(0)?;
    if out.len() != EMBEDDING_DIM {
        return Err(Error::ModelOutput(format!(
            "embedding has {} values",
            out.len()
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
        assert!(Embedding::from_raw(&[1.0; 3]).is_none());
    }
}
