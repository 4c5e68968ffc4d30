//! The embedder's description: what the network expects and what its output means.
//!
//! Every embedder file has one, either in `MANIFEST.toml` of the models folder (an
//! `[model.embedder]` table under the file's `[[model]]` entry) or in a sidecar TOML next
//! to an operator's own file (`<file>.toml`, e.g. `my_model.tflite.toml`, holding the same
//! keys at top level); the sidecar wins. docs/own-model.md documents every key.
//! [`EmbedderSpec::check`] compares it with the loaded model's tensors, so a file that
//! does not match its description is refused at load with an error naming the mismatch
//! instead of failing at its first run. The pipeline's template fingerprint hashes the
//! whole description (see [`EmbedderSpec::fingerprint_text`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::similarity::Calibration;
use crate::runtime::{Model, TensorInfo};

/// How the aligned chip's bytes become the network's input values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputNormalisation {
    /// `value = byte * scale[c] + offset[c]` per channel (in the layout's channel order).
    ScaleOffset { scale: [f32; 3], offset: [f32; 3] },
    /// TensorFlow's `per_image_standardization`: `(x - mean) / max(std, 1/sqrt(N))` over
    /// all values of the chip (FaceNet's prewhitening).
    PerImageStandardisation,
}

/// Order of the input's dimensions and channels: NHWC is TensorFlow's (and Keras'),
/// NCHW is what PyTorch models keep when converted by ai-edge-torch or onnx-tf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputLayout {
    NhwcRgb,
    NhwcBgr,
    NchwRgb,
    NchwBgr,
}

impl InputLayout {
    /// The chip's channel (0 = R) that feeds each input channel.
    pub fn source_channels(self) -> [usize; 3] {
        match self {
            InputLayout::NhwcRgb | InputLayout::NchwRgb => [0, 1, 2],
            InputLayout::NhwcBgr | InputLayout::NchwBgr => [2, 1, 0],
        }
    }

    pub fn channels_first(self) -> bool {
        matches!(self, InputLayout::NchwRgb | InputLayout::NchwBgr)
    }

    /// The input tensor's shape for a `width x height` chip.
    pub fn shape(self, width: u32, height: u32) -> [i32; 4] {
        let (w, h) = (width as i32, height as i32);
        if self.channels_first() {
            [1, 3, h, w]
        } else {
            [1, h, w, 3]
        }
    }

    fn name(self) -> &'static str {
        if self.channels_first() {
            "NCHW"
        } else {
            "NHWC"
        }
    }
}

/// Where the chip is cut from the picture, from the detector's keypoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CropTemplate {
    /// dlib's `get_face_chip_details` layout with `padding` (dlib's default 0.25): both
    /// eyes and the mouth centre fitted to dlib's mean face.
    DlibChip { padding: f32 },
    /// The 5-point 112x112 template of ArcFace-family models (eyes and mouth centre of
    /// it, scaled to the input size). Spelt `arcface_112` as docs/own-model.md writes it
    /// (serde's snake case would make it `arcface112`, which is accepted too).
    #[serde(rename = "arcface_112", alias = "arcface112")]
    Arcface112,
    /// An upright square of `scale` x the eye-to-mouth distance, centred `shift_up` x
    /// that distance above the midpoint between the eye centre and the mouth.
    KeypointSquare { scale: f32, shift_up: f32 },
}

/// An embedder file's description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSpec {
    /// Input width and height in pixels (the tensor is [1, height, width, 3], or
    /// [1, 3, height, width] with an NCHW layout).
    pub input_size: [u32; 2],
    pub input_layout: InputLayout,
    pub normalisation: InputNormalisation,
    pub crop: CropTemplate,
    /// Length of the embedding the network outputs.
    pub output_dim: usize,
    /// The name of the output tensor that holds the embedding, for networks with more
    /// than one output (e.g. an embedding and its norm). Absent: the first output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Whether averaging with the mirrored chip's embedding helps this network (the
    /// configuration's `recognition.flip_average` can still turn it off).
    pub flip_average: bool,
    /// The map from cosine to the API's 0..1 similarity (`facegate calibrate` writes
    /// it). Absent: similarity = cosine, and the pipeline logs a warning at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<SimilarityCalibration>,
}

/// [`Calibration`] with where it came from, as stored in a description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarityCalibration {
    /// Cosine at which the similarity is 0.75 (the default operating point).
    pub threshold_cosine: f32,
    /// Cosine at and below which the similarity is 0.
    pub zero_cosine: f32,
    /// What the threshold was fitted on (pairs file, accuracy there).
    #[serde(default)]
    pub fitted_on: String,
    /// How far a stranger's best match rises (cosine) each time the gallery grows
    /// e-fold: identify's `gallery_size` scoring (src/vision/open_set.rs). Absent: the
    /// rule fitted for dlib's network ([`Calibration::with_default_size_shift`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_shift_per_ln_user: Option<f32>,
}

/// Where a description was read from.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecSource {
    Sidecar(PathBuf),
    Manifest(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("embedder {file}: no description (neither {sidecar} nor a [model.embedder] table for it in {manifest}); see docs/own-model.md")]
    Missing {
        file: String,
        sidecar: String,
        manifest: String,
    },
    #[error("embedder description {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("embedder {file} does not match its description ({source_path}): {mismatch}")]
    Mismatch {
        file: String,
        source_path: String,
        mismatch: String,
    },
}

/// An uncalibrated description's mapping: similarity = cosine on 0..1.
/// serde refuses unknown keys of the kinds that have fields, but lets any key through
/// beside a kind without fields (`crop = { kind = "arcface_112", padding = 0.5 }` would
/// load, and the operator would believe the padding is used).
fn fieldless_kinds_have_no_fields(description: &toml::Value) -> Result<(), String> {
    for (key, fieldless) in [
        ("crop", &["arcface_112", "arcface112"][..]),
        ("normalisation", &["per_image_standardisation"][..]),
    ] {
        let Some(table) = description.get(key).and_then(|v| v.as_table()) else {
            continue;
        };
        let kind = table
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if let Some(extra) = table
            .keys()
            .find(|k| *k != "kind" && fieldless.contains(&kind))
        {
            return Err(format!(
                "{key}: unknown field `{extra}` for kind \"{kind}\""
            ));
        }
    }
    Ok(())
}

const IDENTITY: Calibration =
    Calibration::with_default_size_shift(super::similarity::DEFAULT_THRESHOLD, 0.0);

/// The raw description's checks that its typed parse cannot make.
fn checks_serde_cannot_make(description: &toml::Value) -> Result<(), String> {
    fieldless_kinds_have_no_fields(description)?;
    arrays_have_their_length(description)
}

/// Fixed-size arrays take a longer TOML array's first values
/// (`input_size = [160, 160, 3]` read as 160x160, the 3 silently dropped).
fn arrays_have_their_length(description: &toml::Value) -> Result<(), String> {
    let length = |key: &str| description.get(key)?.as_array().map(Vec::len);
    match length("input_size") {
        Some(n) if n != 2 => Err(format!(
            "input_size needs 2 values [width, height], got {n}"
        )),
        _ => Ok(()),
    }
}

/// Largest `size_shift_per_ln_user` a description may hold: 0.2 cosine per e-fold
/// would lower a match by 1.4 at 1,000 users, i.e. refuse everybody.
pub const MAX_SIZE_SHIFT: f32 = 0.2;

impl EmbedderSpec {
    /// The description of the shipped dlib embedders (also in MANIFEST.toml); the
    /// fallback for tests that build a pipeline from a folder without a manifest.
    pub fn dlib() -> EmbedderSpec {
        EmbedderSpec {
            input_size: [150, 150],
            input_layout: InputLayout::NhwcRgb,
            normalisation: InputNormalisation::ScaleOffset {
                scale: [1.0; 3],
                offset: [0.0; 3],
            },
            crop: CropTemplate::DlibChip { padding: 0.25 },
            output_dim: 128,
            output: None,
            flip_average: true,
            similarity: Some(SimilarityCalibration {
                threshold_cosine: super::similarity::CALIBRATION.threshold_cosine,
                zero_cosine: super::similarity::CALIBRATION.zero_cosine,
                fitted_on: "LFW pairsDevTrain.txt".into(),
                size_shift_per_ln_user: None,
            }),
        }
    }

    /// The sidecar path of an embedder file: `<file>.toml` next to it.
    pub fn sidecar_path(models_dir: &Path, file: &str) -> PathBuf {
        models_dir.join(format!("{file}.toml"))
    }

    /// Finds and parses the description of `file` in `models_dir`: its sidecar, else its
    /// `[model.embedder]` table in `MANIFEST.toml`.
    pub fn find(models_dir: &Path, file: &str) -> Result<(EmbedderSpec, SpecSource), SpecError> {
        let sidecar = Self::sidecar_path(models_dir, file);
        if let Ok(text) = std::fs::read_to_string(&sidecar) {
            let spec = Self::parse(&text).map_err(|reason| SpecError::Invalid {
                path: sidecar.display().to_string(),
                reason,
            })?;
            return Ok((spec, SpecSource::Sidecar(sidecar)));
        }
        let manifest = models_dir.join("MANIFEST.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let invalid = |reason: String| SpecError::Invalid {
                path: manifest.display().to_string(),
                reason,
            };
            if let Some(spec) = Self::from_manifest(&text, file).map_err(invalid)? {
                return Ok((spec, SpecSource::Manifest(manifest)));
            }
        }
        Err(SpecError::Missing {
            file: file.to_string(),
            sidecar: sidecar.display().to_string(),
            manifest: manifest.display().to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<EmbedderSpec, String> {
        let table: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        checks_serde_cannot_make(&table)?;
        let spec: EmbedderSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.validate()?;
        Ok(spec)
    }

    /// The `[model.embedder]` table of `file`'s entry, if it has one.
    pub fn from_manifest(text: &str, file: &str) -> Result<Option<EmbedderSpec>, String> {
        let doc: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let entry = doc
            .get("model")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .find(|m| m.get("file").and_then(|f| f.as_str()) == Some(file));
        let Some(table) = entry.and_then(|e| e.get("embedder")) else {
            return Ok(None);
        };
        checks_serde_cannot_make(table).map_err(|e| format!("{file}: {e}"))?;
        let spec: EmbedderSpec = table
            .clone()
            .try_into()
            .map_err(|e| format!("{file}: {e}"))?;
        spec.validate().map_err(|e| format!("{file}: {e}"))?;
        Ok(Some(spec))
    }

    fn validate(&self) -> Result<(), String> {
        let [w, h] = self.input_size;
        if !(16..=1024).contains(&w) || !(16..=1024).contains(&h) {
            return Err(format!("input_size {w}x{h} is outside 16..1024"));
        }
        if self.output_dim == 0 || self.output_dim > 8192 {
            return Err(format!("output_dim {} is outside 1..8192", self.output_dim));
        }
        if let InputNormalisation::ScaleOffset { scale, offset } = &self.normalisation {
            if scale.iter().chain(offset).any(|v| !v.is_finite()) || scale.contains(&0.0) {
                return Err("normalisation scale must be finite and non-zero".into());
            }
        }
        match self.crop {
            CropTemplate::DlibChip { padding } if !(0.0..=1.0).contains(&padding) => {
                return Err(format!("crop padding {padding} is outside 0..1"))
            }
            CropTemplate::KeypointSquare { scale, shift_up }
                if !(scale > 0.5 && scale < 10.0 && shift_up.abs() < 2.0) =>
            {
                return Err(format!(
                    "crop scale {scale} / shift_up {shift_up} out of range"
                ))
            }
            _ => {}
        }
        if let Some(c) = &self.similarity {
            if !(c.zero_cosine < c.threshold_cosine && c.threshold_cosine < 1.0)
                || c.zero_cosine < -1.0
            {
                return Err(format!(
                    "similarity needs -1 <= zero_cosine < threshold_cosine < 1, got {} and {}",
                    c.zero_cosine, c.threshold_cosine
                ));
            }
            if let Some(shift) = c.size_shift_per_ln_user {
                if !(0.0..=MAX_SIZE_SHIFT).contains(&shift) {
                    return Err(format!(
                        "similarity size_shift_per_ln_user {shift} is outside 0..{MAX_SIZE_SHIFT}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the loaded model's tensors against the description: one input of the
    /// described layout and size, float32 or quantized int8/uint8 (the chip's values are
    /// quantized with the tensor's scale and zero point), and an embedding output of
    /// `output_dim` values, float32 or quantized.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        let [w, h] = self.input_size;
        let inputs: Vec<_> = model.inputs().collect();
        let [input] = inputs.as_slice() else {
            return Err(format!("model has {} inputs, described: 1", inputs.len()));
        };
        let expected = self.input_layout.shape(w, h);
        if input.shape != expected {
            return Err(format!(
                "input shape is {:?}, described: {:?} (input_size = [{w}, {h}], {})",
                input.shape,
                expected,
                self.input_layout.name()
            ));
        }
        check_element_type("input", input)?;
        let index = self.output_index(model)?;
        let output = model.output_info(index).map_err(|e| e.to_string())?;
        let n = output.element_count();
        if n != self.output_dim {
            return Err(format!(
                "output {:?} has {n} values (shape {:?}), described: output_dim = {}{}",
                output.name,
                output.shape,
                self.output_dim,
                list_outputs(model)
            ));
        }
        check_element_type("output", output)
    }

    /// The index of the output that holds the embedding: the one `output` names, else
    /// the first.
    pub fn output_index(&self, model: &Model) -> Result<usize, String> {
        let mut outputs = model.outputs();
        match &self.output {
            None if outputs.next().is_some() => Ok(0),
            None => Err("model has no output".into()),
            Some(name) => outputs.position(|o| &o.name == name).ok_or_else(|| {
                format!("model has no output named {name:?}{}", list_outputs(model))
            }),
        }
    }

    /// The calibration to use: the description's, or similarity = cosine if absent.
    pub fn calibration(&self) -> Calibration {
        self.similarity.as_ref().map_or(IDENTITY, |c| {
            let default = Calibration::with_default_size_shift(c.threshold_cosine, c.zero_cosine);
            Calibration {
                size_shift_per_ln_user: c
                    .size_shift_per_ln_user
                    .unwrap_or(default.size_shift_per_ln_user),
                ..default
            }
        })
    }

    /// Canonical text of everything that changes the embedding space or its scores, for
    /// the template fingerprint (the `fitted_on` note is left out). Keys added after the
    /// first release appear only when set, so that a description that does not use
    /// them keeps its fingerprint and the templates stored with it stay valid.
    pub fn fingerprint_text(&self) -> String {
        let similarity = self
            .similarity
            .as_ref()
            .map(|c| fingerprint::SimilarityCalibration {
                threshold_cosine: c.threshold_cosine,
                zero_cosine: c.zero_cosine,
                fitted_on: "",
            });
        let mut text = format!(
            "{:?}",
            fingerprint::EmbedderSpec {
                input_size: &self.input_size,
                input_layout: &self.input_layout,
                normalisation: &self.normalisation,
                crop: &self.crop,
                output_dim: &self.output_dim,
                flip_average: &self.flip_average,
                similarity: &similarity,
            }
        );
        if let Some(output) = &self.output {
            text.push_str(&format!(" output={output:?}"));
        }
        if let Some(shift) = self
            .similarity
            .as_ref()
            .and_then(|c| c.size_shift_per_ln_user)
        {
            text.push_str(&format!(" size_shift_per_ln_user={shift:?}"));
        }
        text
    }
}

/// The description as the first release hashed it (its derived `Debug`).
mod fingerprint {
    // The fields are read by the derived `Debug`, which dead-code analysis ignores.
    #[allow(dead_code)]
    #[derive(Debug)]
    pub(super) struct EmbedderSpec<'a> {
        pub input_size: &'a [u32; 2],
        pub input_layout: &'a super::InputLayout,
        pub normalisation: &'a super::InputNormalisation,
        pub crop: &'a super::CropTemplate,
        pub output_dim: &'a usize,
        pub flip_average: &'a bool,
        pub similarity: &'a Option<SimilarityCalibration>,
    }

    /// The calibration's fields of the first release, with its type name: the derived
    /// `Debug` prints both.
    #[allow(dead_code)]
    #[derive(Debug)]
    pub(super) struct SimilarityCalibration {
        pub threshold_cosine: f32,
        pub zero_cosine: f32,
        pub fitted_on: &'static str,
    }
}

/// Float32 as it is, or int8/uint8 with the per-tensor scale and zero point that
/// [`Model::input_values_mut`] and [`Model::output_dequantized`] use (the runtime's
/// one rule, [`TensorInfo::real_value_encoding`]).
fn check_element_type(what: &str, tensor: &TensorInfo) -> Result<(), String> {
    tensor
        .real_value_encoding()
        .map(drop)
        .map_err(|reason| format!("{what} {reason}"))
}

/// "; the model's outputs: ..." for errors about the embedding output.
fn list_outputs(model: &Model) -> String {
    let all: Vec<String> = model
        .outputs()
        .map(|o| format!("{:?} {:?} {}", o.name, o.shape, o.element_type))
        .collect();
    if all.len() < 2 {
        return String::new();
    }
    format!(
        "; the model's outputs: {} (name the embedding with output = \"...\")",
        all.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACENET: &str = r#"
input_size = [160, 160]
input_layout = "nhwc_rgb"
normalisation = { kind = "per_image_standardisation" }
crop = { kind = "keypoint_square", scale = 3.2, shift_up = 0.2 }
output_dim = 512
flip_average = true
"#;

    #[test]
    fn a_sidecar_without_calibration_parses_and_maps_cosine_to_itself() {
        let spec = EmbedderSpec::parse(FACENET).unwrap();
        assert_eq!(spec.output_dim, 512);
        assert_eq!(
            spec.normalisation,
            InputNormalisation::PerImageStandardisation
        );
        let c = spec.calibration();
        assert!((c.similarity(0.6) - 0.6).abs() < 1e-6);
        assert!((c.similarity(0.9) - 0.9).abs() < 1e-6);
    }

    #[test]
    fn a_key_that_does_not_belong_to_its_table_is_refused() {
        for (from, to) in [
            (
                "{ kind = \"keypoint_square\", scale = 3.2, shift_up = 0.2 }",
                "{ kind = \"keypoint_square\", scale = 3.2, shift_up = 0.2, padding = 0.25 }",
            ),
            (
                "{ kind = \"keypoint_square\", scale = 3.2, shift_up = 0.2 }",
                "{ kind = \"arcface_112\", padding = 0.5 }",
            ),
            (
                "{ kind = \"per_image_standardisation\" }",
                "{ kind = \"per_image_standardisation\", scale = [1.0, 1.0, 1.0] }",
            ),
            (
                "flip_average = true\n",
                "flip_average = true\nsimilarity = { threshold_cosine = 0.6, zero_cosine = 0.0, \
                 identify_threshold = 0.9 }\n",
            ),
        ] {
            let text = FACENET.replace(from, to);
            assert_ne!(text, FACENET, "{from}");
            let err = EmbedderSpec::parse(&text).unwrap_err();
            assert!(err.contains("unknown field"), "{to}: {err}");
        }
    }

    #[test]
    fn every_crop_and_layout_the_docs_name_parses() {
        // The spellings of docs/own-model.md, checked against the parser.
        let doc = include_str!("../../docs/own-model.md");
        for kind in ["dlib_chip", "arcface_112", "keypoint_square"] {
            assert!(doc.contains(&format!("kind = \"{kind}\"")), "{kind}");
        }
        for (crop, expected) in [
            ("{ kind = \"arcface_112\" }", CropTemplate::Arcface112),
            ("{ kind = \"arcface112\" }", CropTemplate::Arcface112),
            (
                "{ kind = \"dlib_chip\", padding = 0.25 }",
                CropTemplate::DlibChip { padding: 0.25 },
            ),
        ] {
            let text = FACENET.replace(
                "{ kind = \"keypoint_square\", scale = 3.2, shift_up = 0.2 }",
                crop,
            );
            assert_eq!(EmbedderSpec::parse(&text).unwrap().crop, expected, "{crop}");
        }
        for (layout, expected) in [
            ("nhwc_bgr", InputLayout::NhwcBgr),
            ("nchw_rgb", InputLayout::NchwRgb),
            ("nchw_bgr", InputLayout::NchwBgr),
        ] {
            assert!(doc.contains(layout), "{layout}");
            let text = FACENET.replace("\"nhwc_rgb\"", &format!("\"{layout}\""));
            assert_eq!(EmbedderSpec::parse(&text).unwrap().input_layout, expected);
        }
    }

    #[test]
    fn descriptions_without_the_later_keys_keep_their_first_fingerprint_text() {
        // Pinned from the first release: stored templates carry a fingerprint hashed
        // from this text, so it must not change when keys are added.
        let spec = EmbedderSpec::parse(&format!(
            "{FACENET}similarity = {{ threshold_cosine = 0.47276, zero_cosine = -0.90837 }}"
        ))
        .unwrap();
        assert_eq!(
            spec.fingerprint_text(),
            "EmbedderSpec { input_size: [160, 160], input_layout: NhwcRgb, normalisation: \
             PerImageStandardisation, crop: KeypointSquare { scale: 3.2, shift_up: 0.2 }, \
             output_dim: 512, flip_average: true, similarity: Some(SimilarityCalibration { \
             threshold_cosine: 0.47276, zero_cosine: -0.90837, fitted_on: \"\" }) }"
        );
        let named = EmbedderSpec {
            output: Some("emb".into()),
            ..spec.clone()
        };
        assert_ne!(named.fingerprint_text(), spec.fingerprint_text());
        let mut sized = spec.clone();
        if let Some(c) = sized.similarity.as_mut() {
            c.size_shift_per_ln_user = Some(0.04);
        }
        assert_ne!(sized.fingerprint_text(), spec.fingerprint_text());
        assert!((sized.calibration().size_shift_per_ln_user - 0.04).abs() < 1e-9);
    }

    #[test]
    fn a_description_without_a_size_shift_gets_the_default_rule_of_its_span() {
        let spec = EmbedderSpec::parse(&format!(
            "{FACENET}similarity = {{ threshold_cosine = 0.5, zero_cosine = -0.5 }}"
        ))
        .unwrap();
        let c = spec.calibration();
        assert!(
            (c.size_shift_per_ln_user - super::super::open_set::SIZE_SHIFT_PER_LN_USER).abs()
                < 1e-6
        );
        assert_eq!(
            EmbedderSpec::dlib().calibration(),
            super::super::CALIBRATION
        );
    }

    #[test]
    fn an_input_size_or_size_shift_that_cannot_be_meant_is_refused() {
        let three = FACENET.replace("[160, 160]", "[160, 160, 3]");
        let e = EmbedderSpec::parse(&three).unwrap_err();
        assert!(e.contains("input_size needs 2 values"), "{e}");
        let manifest = format!("[[model]]\nfile = \"b.tflite\"\n[model.embedder]\n{three}");
        let e = EmbedderSpec::from_manifest(&manifest, "b.tflite").unwrap_err();
        assert!(e.contains("input_size needs 2 values"), "{e}");
        for bad in ["-0.01", "0.5", "nan"] {
            let text = format!(
                "{FACENET}similarity = {{ threshold_cosine = 0.5, zero_cosine = -0.5, \
                 size_shift_per_ln_user = {bad} }}"
            );
            let e = EmbedderSpec::parse(&text).unwrap_err();
            assert!(e.contains("size_shift_per_ln_user"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_impossible_values_are_refused_with_their_name() {
        let typo = format!("{FACENET}\noutput_dims = 3\n");
        assert!(EmbedderSpec::parse(&typo)
            .unwrap_err()
            .contains("output_dims"));
        let zero = FACENET.replace("output_dim = 512", "output_dim = 0");
        assert!(EmbedderSpec::parse(&zero)
            .unwrap_err()
            .contains("output_dim"));
        let inverted =
            format!("{FACENET}\nsimilarity = {{ threshold_cosine = 0.3, zero_cosine = 0.5 }}\n");
        assert!(EmbedderSpec::parse(&inverted)
            .unwrap_err()
            .contains("zero_cosine"));
    }

    #[test]
    fn the_manifest_table_of_the_named_file_is_used() {
        let manifest = format!(
            "[[model]]\nfile = \"a.tflite\"\n[[model]]\nfile = \"b.tflite\"\n[model.embedder]\n{FACENET}"
        );
        assert!(EmbedderSpec::from_manifest(&manifest, "a.tflite")
            .unwrap()
            .is_none());
        let b = EmbedderSpec::from_manifest(&manifest, "b.tflite")
            .unwrap()
            .unwrap();
        assert_eq!(b.input_size, [160, 160]);
    }

    #[test]
    fn the_fingerprint_text_changes_with_the_calibration_but_not_its_note() {
        let mut a = EmbedderSpec::dlib();
        let mut b = a.clone();
        b.similarity.as_mut().unwrap().fitted_on = "elsewhere".into();
        assert_eq!(a.fingerprint_text(), b.fingerprint_text());
        a.similarity.as_mut().unwrap().threshold_cosine = 0.9;
        assert_ne!(a.fingerprint_text(), b.fingerprint_text());
    }
}
