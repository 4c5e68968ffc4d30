//! The LiteRT runtime: finds and loads `libLiteRt.so` (from the pinned
//! `ai-edge-litert==2.1.4` wheel) at run time and runs `.tflite` models on the CPU.
//!
//! Public face: [`Runtime`] (the loaded library, cheap to clone, shared by threads) and
//! [`Model`] (one compiled model with its own tensors, used by one thread at a time).

mod cores;
mod element;
mod ffi;
mod quantize;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cores::{this_thread_cores, Confined, CoreSplit};
pub use element::ElementType;
pub use ffi::TensorInfo;
pub use quantize::QuantizingInput;

/// The environment variable that overrides every other way of finding the library.
pub const LIBRARY_ENV: &str = "FACEGATE_LITERT_LIB";
/// The LiteRT release whose C API this module declares.
pub const LITERT_VERSION: &str = "2.1.4";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "LiteRT library not found (looked in: {searched}). Run `cross/fetch-litert.sh` \
         (it unpacks libLiteRt.so from the ai-edge-litert==2.1.4 wheel into .litert/), \
         or point {LIBRARY_ENV} or runtime.library in the config at libLiteRt.so"
    )]
    NotFound { searched: String },
    #[error(
        "cannot load LiteRT library {path}: {reason}. facegate needs libLiteRt.so from \
         ai-edge-litert=={LITERT_VERSION} for this machine's architecture; fetch it with \
         `cross/fetch-litert.sh`"
    )]
    Load { path: PathBuf, reason: String },
    #[error(
        "LiteRT library {path} is version {found}, facegate needs {LITERT_VERSION}; fetch \
         it with `cross/fetch-litert.sh`"
    )]
    WrongVersion { path: PathBuf, found: String },
    #[error("cannot read model {path}: {source}")]
    ModelFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    #[error("model {model}: {reason}")]
    Shape { model: String, reason: String },
}

/// A loaded LiteRT library.
#[derive(Clone)]
pub struct Runtime {
    env: Arc<ffi::Environment>,
    path: PathBuf,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("path", &self.path).finish()
    }
}

impl Runtime {
    /// Finds the library (see [`candidate_paths`]) and loads it.
    pub fn locate_and_load(configured: Option<&Path>) -> Result<Runtime, Error> {
        let env = std::env::var_os(LIBRARY_ENV).map(PathBuf::from);
        let path = find_library(env.as_deref(), configured)?;
        Runtime::load(&path)
    }

    /// Loads the library at `path`.
    pub fn load(path: &Path) -> Result<Runtime, Error> {
        if !path.is_file() {
            return Err(Error::NotFound {
                searched: path.display().to_string(),
            });
        }
        check_version_stamp(path)?;
        let api = ffi::Api::open(path).map_err(|reason| Error::Load {
            path: path.to_path_buf(),
            reason,
        })?;
        let env = ffi::Environment::new(api).map_err(|reason| Error::Load {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(Runtime {
            env: Arc::new(env),
            path: path.to_path_buf(),
        })
    }

    pub fn library_path(&self) -> &Path {
        &self.path
    }

    /// Reads and compiles a `.tflite` file for the CPU with `threads` XNNPACK threads.
    pub fn load_model(&self, path: &Path, threads: usize) -> Result<Model, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ModelFile {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.model_from_bytes(&name, bytes, threads)
    }

    pub fn model_from_bytes(
        &self,
        name: &str,
        bytes: Vec<u8>,
        threads: usize,
    ) -> Result<Model, Error> {
        let refuse = |reason: String| Error::Model {
            model: name.to_string(),
            reason,
        };
        if let Some(reason) = not_a_tflite_file(&bytes) {
            return Err(refuse(reason));
        }
        let session = ffi::Session::new(self.env.clone(), bytes, threads).map_err(refuse)?;
        Ok(Model {
            name: name.to_string(),
            session,
            quantize_scratch: Vec::new(),
        })
    }
}

/// One compiled model and its input/output tensors in host memory.
pub struct Model {
    name: String,
    session: ffi::Session,
    /// The real values of a quantized input before quantization, kept between runs:
    /// an embedder chip is ~70k values, allocated anew on every run otherwise.
    quantize_scratch: Vec<f32>,
}

impl Model {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn inputs(&self) -> impl Iterator<Item = &TensorInfo> {
        self.session.inputs.iter().map(|(i, _)| i)
    }

    pub fn outputs(&self) -> impl Iterator<Item = &TensorInfo> {
        self.session.outputs.iter().map(|(i, _)| i)
    }

    pub fn input_info(&self, index: usize) -> Result<&TensorInfo, Error> {
        self.session
            .inputs
            .get(index)
            .map(|(i, _)| i)
            .ok_or_else(|| self.shape_error(format!("no input {index}")))
    }

    pub fn output_info(&self, index: usize) -> Result<&TensorInfo, Error> {
        self.session
            .outputs
            .get(index)
            .map(|(i, _)| i)
            .ok_or_else(|| self.shape_error(format!("no output {index}")))
    }

    /// The float input `index`, to be filled before [`Model::run`].
    pub fn input_f32_mut(&mut self, index: usize) -> Result<&mut [f32], Error> {
        self.expect_f32(true, index)?;
        Ok(self.session.inputs[index].1.f32s_mut())
    }

    /// Input `index` as a [`QuantizingInput`]: real values go in, and an int8/uint8
    /// input stores them quantized with its own scale and zero point.
    pub fn input_values_mut(&mut self, index: usize) -> Result<QuantizingInput<'_>, Error> {
        let encoding = self
            .input_info(index)?
            .real_value_encoding()
            .map_err(|reason| self.shape_error(format!("input {index} {reason}")))?;
        let tensor = &mut self.session.inputs[index].1;
        Ok(match encoding {
            None => QuantizingInput::Float(tensor.f32s_mut()),
            Some((scale, zero_point, signed)) => QuantizingInput::Bytes {
                bytes: tensor.bytes_mut(),
                values: &mut self.quantize_scratch,
                inv_scale: 1.0 / scale,
                zero: zero_point as f32,
                signed,
            },
        })
    }

    /// The float output `index` of the last run.
    pub fn output_f32(&self, index: usize) -> Result<&[f32], Error> {
        self.expect_f32(false, index)?;
        Ok(self.session.outputs[index].1.f32s())
    }

    /// Output `index` as floats whatever its type: int8/uint8 outputs are dequantized.
    pub fn output_dequantized(&self, index: usize) -> Result<Vec<f32>, Error> {
        let info = self.output_info(index)?;
        let tensor = &self.session.outputs[index].1;
        let (scale, zero) = info.quantization.unwrap_or((1.0, 0));
        Ok(match info.element_type {
            ElementType::Float32 => tensor.f32s().to_vec(),
            ElementType::Int8 => tensor
                .bytes()
                .iter()
                .map(|&b| (b as i8 as i64 - zero) as f32 * scale)
                .collect(),
            ElementType::UInt8 => tensor
                .bytes()
                .iter()
                .map(|&b| (b as i64 - zero) as f32 * scale)
                .collect(),
            other => {
                return Err(self.shape_error(format!(
                    "output {index} is {other}; facegate reads float32, int8 and uint8 outputs"
                )))
            }
        })
    }

    pub fn run(&mut self) -> Result<(), Error> {
        self.session.run().map_err(|reason| Error::Model {
            model: self.name.clone(),
            reason,
        })
    }

    fn expect_f32(&self, input: bool, index: usize) -> Result<(), Error> {
        let info = if input {
            self.input_info(index)?
        } else {
            self.output_info(index)?
        };
        if info.element_type != ElementType::Float32 {
            return Err(self.shape_error(format!(
                "{} {index} is {}, not float32",
                if input { "input" } else { "output" },
                info.element_type
            )));
        }
        Ok(())
    }

    fn shape_error(&self, reason: String) -> Error {
        Error::Shape {
            model: self.name.clone(),
            reason,
        }
    }
}

/// Why `bytes` cannot be a TensorFlow Lite file, if they cannot: an operator's ONNX or
/// PyTorch file under a `.tflite` name would otherwise get LiteRT's "invalid flatbuffer".
fn not_a_tflite_file(bytes: &[u8]) -> Option<String> {
    // A TFLite flatbuffer carries the file identifier "TFL3" after its 4-byte root offset.
    const IDENTIFIER: &[u8; 4] = b"TFL3";
    if bytes.is_empty() {
        return Some("the file is empty".into());
    }
    if bytes.get(4..8) != Some(IDENTIFIER.as_slice()) {
        return Some(
            "not a TensorFlow Lite file (no \"TFL3\" identifier at byte 4); convert the \
             network to .tflite first (docs/own-model.md)"
                .into(),
        );
    }
    None
}

/// Where the library is looked for, in order: the environment override, the config,
/// `.litert/<arch>/` under the working directory (README's set-up puts it there), beside
/// the executable, `.litert/<arch>/` above a cargo `target/<profile>/` executable, and
/// the Debian package's `/usr/lib/facegate/`.
pub fn candidate_paths(env_override: Option<&Path>, configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = env_override {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(p.to_path_buf());
    }
    let local = Path::new(".litert")
        .join(std::env::consts::ARCH)
        .join("libLiteRt.so");
    out.push(local.clone());
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("libLiteRt.so"));
        for up in dir.ancestors().skip(1).take(3) {
            out.push(up.join(&local));
        }
    }
    out.push(PathBuf::from("/usr/lib/facegate/libLiteRt.so"));
    out
}

fn find_library(env_override: Option<&Path>, configured: Option<&Path>) -> Result<PathBuf, Error> {
    let candidates = candidate_paths(env_override, configured);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::NotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `cross/fetch-litert.sh` writes `VERSION` beside the library; a stamp that names
/// another release means the C API may not match our declarations.
fn check_version_stamp(path: &Path) -> Result<(), Error> {
    let Some(stamp) = path.parent().map(|d| d.join("VERSION")) else {
        return Ok(());
    };
    let Ok(text) = std::fs::read_to_string(&stamp) else {
        return Ok(());
    };
    let found = text.split_whitespace().last().unwrap_or("").to_string();
    if !found.is_empty() && found != LITERT_VERSION {
        return Err(Error::WrongVersion {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_the_tflite_identifier_are_named_as_such() {
        assert!(not_a_tflite_file(b"").unwrap().contains("empty"));
        let onnx = b"\x08\x07\x12\x07pytorch\x1a\x052.1.0";
        assert!(not_a_tflite_file(onnx).unwrap().contains("TFL3"));
        assert!(not_a_tflite_file(b"\x1c\x00\x00\x00TFL3\x00\x00").is_none());
    }

    #[test]
    fn env_override_is_the_only_candidate() {
        let c = candidate_paths(Some(Path::new("/x/libLiteRt.so")), Some(Path::new("/y")));
        assert_eq!(c, vec![PathBuf::from("/x/libLiteRt.so")]);
    }

    #[test]
    fn missing_library_error_names_the_fix() {
        let err = Runtime::load(Path::new("/nonexistent/libLiteRt.so")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("fetch-litert.sh"), "{text}");
        assert!(text.contains(LIBRARY_ENV), "{text}");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_a_load_error() {
        let dir = std::env::temp_dir().join(format!("facegate-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("libLiteRt.so");
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let err = Runtime::load(&fake).unwrap_err();
        assert!(matches!(err, Error::Load { .. }), "{err}");
        std::fs::write(dir.join("VERSION"), "ai-edge-litert 2.3.0\n").unwrap();
        let err = Runtime::load(&fake).unwrap_err();
        assert!(matches!(err, Error::WrongVersion { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
