//! The whole recognition pipeline behind one thread-safe type.
//!
//! LiteRT compiled models are not safe to run from two threads at once, so the pipeline
//! owns a small pool of sessions (detector + embedder + mask model each); a call borrows
//! one session through the pool's admission (src/vision/admission.rs): it waits in a
//! bounded line with a deadline when all are busy, and is refused with
//! [`Error::Busy`] beyond them. Every caller (API, camera, CLI) shares that one line.
//! A picture is decoded only once its call holds a session, so at most `workers`
//! decoded pictures exist at a time however many requests wait.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::RgbImage;
use sha2::{Digest, Sha256};

use super::admission::{AdmissionLimits, Lease, PoolStatus, SessionPool};
use super::align::{align, align_with_transform, frontalness, ChipLayout};
use super::detect::{
    Detector, DetectorKind, DetectorParams, FarRetry, FAR_RETRY_BELOW, ZOOM_OUT_RETRY,
};
use super::embed::{embed, embed_sum, Embedding};
use super::embedder_spec::{CropTemplate, EmbedderSpec, SpecError, SpecSource};
use super::flip::{embed_with, Flip};
use super::jitter::{ChipJitter, ExtraChips};
use super::landmarks::{check_mesh_model, mesh_landmarks, Alignment, MeshLandmarks, MIN_PRESENCE};
use super::mask::{input_side, mask_probability};
use super::open_set::ScoreNormalisation;
use super::sharpness::chip_sharpness;
use super::similarity::Calibration;
use super::stored_crop::{chip_from, recut, stored_crop, CropPoints};
use super::warp::WarpScratch;
use super::{decode_image, DecodeLimits, Detection, Error, Face, Quality};
use crate::runtime::{Confined, CoreSplit, Model, Runtime};

/// Everything the pipeline needs to know; `config` fills it from the TOML file.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub models_dir: PathBuf,
    pub detector: DetectorKind,
    pub embedder_file: String,
    pub mask_file: String,
    /// The face landmark network, loaded only for `Alignment::FaceMesh`.
    pub landmarks_file: String,
    /// Which points align the face to the embedder's crop template.
    pub alignment: Alignment,
    /// XNNPACK threads per model run.
    pub threads_per_model: usize,
    /// XNNPACK threads of the idle-machine session, lent to a caller that finds every
    /// session free and nobody waiting (src/vision/admission.rs). No such session when
    /// it is not more than `threads_per_model`.
    pub idle_request_threads: usize,
    /// Keep the idle-machine session's caller and its models' worker threads on
    /// distinct cores (src/runtime/cores.rs).
    pub pin_idle_request_threads: bool,
    /// Sessions in the pool: how many images can be processed at once.
    pub workers: usize,
    /// Callers allowed to wait for a session, and for how long.
    pub admission: AdmissionLimits,
    pub min_detector_score: f32,
    /// When no face is found, detect again with the picture shrunk into a black border of
    /// this many times its longer side (finds faces that fill the frame); <= 1: off.
    pub detector_zoom_out: f32,
    /// With the short-range detector: also run the full-range one when nothing is found,
    /// or every face scores below this and is small in the frame; 0: never
    /// ([`FarRetry`]).
    pub far_face_retry_below: f32,
    /// `Face::masked` is `mask_probability >= mask_threshold`.
    pub mask_threshold: f32,
    /// Extra margin around the detector box for the mask crop (0.3 = 30 % larger).
    pub mask_margin: f32,
    /// dlib chip padding (0.25 is dlib's default); overrides the padding of an embedder
    /// whose description crops a dlib chip.
    pub chip_padding: f32,
    /// Average the embedding with that of the mirrored chip.
    pub flip_average: bool,
    /// Test-time chips averaged with the aligned chip (src/vision/jitter.rs); empty: none.
    pub test_time_chips: Vec<ChipJitter>,
    pub decode_limits: DecodeLimits,
    /// How identify scores its matches (src/vision/open_set.rs).
    pub score_normalisation: ScoreNormalisation,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            models_dir: PathBuf::from("models-tflite"),
            detector: DetectorKind::ShortRange,
            embedder_file: "dlib_face_recognition_int8.tflite".into(),
            mask_file: "mask_mnv2_128_int8.tflite".into(),
            landmarks_file: super::landmarks::FACE_MESH_FILE.into(),
            alignment: Alignment::Keypoints,
            threads_per_model: 1,
            idle_request_threads: 1,
            pin_idle_request_threads: true,
            workers: 1,
            admission: AdmissionLimits::default(),
            min_detector_score: 0.5,
            detector_zoom_out: ZOOM_OUT_RETRY,
            far_face_retry_below: FAR_RETRY_BELOW,
            mask_threshold: 0.5,
            mask_margin: 0.5,
            chip_padding: 0.25,
            flip_average: true,
            test_time_chips: Vec::new(),
            decode_limits: DecodeLimits::default(),
            score_normalisation: ScoreNormalisation::GallerySize,
        }
    }
}

/// Which detected faces to analyse further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaceSelection {
    /// Every face, largest first.
    All,
    /// The largest face only (the API's rule when several faces are in a picture).
    Largest,
    /// The face whose centre is nearest the image centre (LFW's convention).
    NearestCenter,
}

/// Time spent in each stage of one analysis.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StageTimings {
    pub decode: Duration,
    pub detect: Duration,
    /// The face mesh (`Alignment::FaceMesh`; zero otherwise).
    pub landmarks: Duration,
    pub align: Duration,
    pub mask: Duration,
    pub embed: Duration,
    /// Bare model runs (only from `measure_stages`) in the same place of the same
    /// sequence as their stage, one pass later: decode, detector run, align, mask run,
    /// embedder run(s), without the stages' own work. Stage / run is what a stage adds
    /// to its model under the same cache state and machine load.
    pub detect_model_run: Duration,
    pub mask_model_run: Duration,
    pub landmarks_model_run: Duration,
    /// Both runs when the embedding is flip-averaged.
    pub embed_model_run: Duration,
}

struct Session {
    detector: Model,
    /// The full-range detector of [`Pipeline::far`], when there is one.
    far_detector: Option<Model>,
    embedder: Model,
    mask: Model,
    /// The face mesh, with `Alignment::FaceMesh` only.
    landmarks: Option<Model>,
    /// Letterbox and mask-crop buffers, reused from frame to frame.
    scratch: WarpScratch,
    /// The idle-machine session's cores: its models' workers were started on the
    /// others, a caller is pinned to this one while it works.
    cores: Option<CoreSplit>,
}

impl Session {
    /// Pins the calling thread to this session's caller core, if it has one, until
    /// the guard drops.
    fn pin_caller(&self) -> Option<Confined> {
        self.cores.as_ref().map(CoreSplit::pin_caller)
    }
}

/// What [`Pipeline::appearance`] found: one embedder run of the aligned chip and how
/// sharp that chip is ([`chip_sharpness`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Appearance {
    pub embedding: Embedding,
    pub sharpness: f32,
}

pub struct Pipeline {
    options: PipelineOptions,
    detector: Detector,
    far: Option<FarRetry>,
    chip: ChipLayout,
    /// Where `chip` shows a face, recorded with each stored crop.
    crop_points: CropPoints,
    mask_side: u32,
    fingerprint: String,
    spec: EmbedderSpec,
    /// `options.flip_average` and the description's `flip_average`.
    flip: bool,
    pool: SessionPool<Session>,
}

/// One session held away from every other caller until dropped (maintenance, and the
/// tests that fill the pool on purpose).
pub struct HeldSession<'a> {
    _lease: Lease<'a, Session>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("options", &self.options)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Pipeline {
    /// Loads and compiles every model `options.workers` times.
    pub fn load(runtime: &Runtime, options: PipelineOptions) -> Result<Pipeline, Error> {
        let dir = &options.models_dir;
        let threads = options.threads_per_model.max(1);
        let read = |file: &str| -> Result<Vec<u8>, Error> {
            let path = dir.join(file);
            std::fs::read(&path)
                .map_err(|source| Error::Runtime(crate::runtime::Error::ModelFile { path, source }))
        };
        let detector_bytes = read(options.detector.file_name())?;
        let far_bytes = far_detector_bytes(&options);
        let embedder_bytes = read(&options.embedder_file)?;
        let mask_bytes = read(&options.mask_file)?;
        let landmarks_bytes = match options.alignment {
            Alignment::FaceMesh => Some(read(&options.landmarks_file)?),
            Alignment::Keypoints => None,
        };
        let (spec, spec_source) = EmbedderSpec::find(dir, &options.embedder_file)?;
        let template = match spec.crop {
            CropTemplate::DlibChip { .. } => CropTemplate::DlibChip {
                padding: options.chip_padding,
            },
            ref other => other.clone(),
        };
        let chip = ChipLayout {
            width: spec.input_size[0],
            height: spec.input_size[1],
            template,
        };
        let crop_points = CropPoints::of_layout(&chip)
            .ok_or_else(|| Error::ModelOutput("degenerate crop template".into()))?;
        let flip = options.flip_average && spec.flip_average;
        if spec.similarity.is_none() {
            tracing::warn!(
                embedder = %options.embedder_file,
                "embedder description has no similarity calibration: similarity = cosine \
                 (run `facegate calibrate`)"
            );
        }
        let fingerprint = fingerprint(
            &embedder_bytes,
            &chip,
            flip,
            &spec,
            landmarks_bytes.as_deref(),
            &options.test_time_chips,
        );
        let session = |threads: usize| -> Result<Session, Error> {
            Ok(Session {
                detector: runtime.model_from_bytes(
                    options.detector.file_name(),
                    detector_bytes.clone(),
                    threads,
                )?,
                far_detector: match &far_bytes {
                    Some(bytes) => Some(runtime.model_from_bytes(
                        DetectorKind::FullRange.file_name(),
                        bytes.clone(),
                        threads,
                    )?),
                    None => None,
                },
                embedder: runtime.model_from_bytes(
                    &options.embedder_file,
                    embedder_bytes.clone(),
                    threads,
                )?,
                mask: runtime.model_from_bytes(&options.mask_file, mask_bytes.clone(), threads)?,
                landmarks: match &landmarks_bytes {
                    Some(bytes) => Some(runtime.model_from_bytes(
                        &options.landmarks_file,
                        bytes.clone(),
                        threads,
                    )?),
                    None => None,
                },
                scratch: WarpScratch::default(),
                cores: None,
            })
        };
        let sessions = (0..options.workers.max(1))
            .map(|_| session(threads))
            .collect::<Result<Vec<_>, _>>()?;
        let idle_machine = match options.idle_request_threads {
            n if n > threads => Some(idle_machine_session(
                n,
                options.pin_idle_request_threads,
                session,
            )?),
            _ => None,
        };
        spec.check(&sessions[0].embedder)
            .map_err(|mismatch| SpecError::Mismatch {
                file: options.embedder_file.clone(),
                source_path: match &spec_source {
                    SpecSource::Sidecar(p) | SpecSource::Manifest(p) => p.display().to_string(),
                },
                mismatch,
            })?;
        if let Some(model) = &sessions[0].landmarks {
            check_mesh_model(model)?;
        }
        let mask_side = input_side(&sessions[0].mask)?;
        let params = DetectorParams {
            min_score: options.min_detector_score,
            zoom_out_retry: options.detector_zoom_out,
            ..DetectorParams::default()
        };
        let detector = Detector::new(options.detector, params);
        let far = far_bytes.map(|_| FarRetry {
            detector: Detector::new(DetectorKind::FullRange, params),
            below: options.far_face_retry_below,
        });
        Ok(Pipeline {
            detector,
            far,
            chip,
            crop_points,
            mask_side,
            fingerprint,
            spec,
            flip,
            pool: SessionPool::with_idle_machine_session(sessions, idle_machine, options.admission),
            options,
        })
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The embedder's description (MANIFEST.toml or its sidecar).
    pub fn embedder_spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// The embedder's map from cosine to the API's similarity.
    pub fn calibration(&self) -> Calibration {
        self.spec.calibration()
    }

    /// The API's similarity (0..1) for a cosine of two embeddings of this pipeline.
    pub fn similarity(&self, cosine: f32) -> f32 {
        self.calibration().similarity(cosine)
    }

    /// The scores identify compares with its threshold (0..1), one per user of
    /// `ranked`: each user's best cosine to the probe, best first, as the index answers
    /// a search for [`Pipeline::identify_candidates`] users, in a gallery of `users`
    /// users. identify-face, the camera recogniser and `eval identify` all score through
    /// here.
    pub fn identify_scores(&self, ranked: &[f32], users: usize) -> Vec<f32> {
        self.options
            .score_normalisation
            .scores(&self.calibration(), ranked, users)
    }

    /// How many users an identify search must return so that its first `listed` can be
    /// scored (the normalisation's cohort needs the runners-up).
    pub fn identify_candidates(&self, listed: usize) -> usize {
        self.options.score_normalisation.candidates(listed)
    }

    /// Name of the open-set score normalisation in use (for reports).
    pub fn score_normalisation_name(&self) -> &'static str {
        self.options.score_normalisation.name()
    }

    /// Identifies the embedding space: embedder file bytes, chip layout, flip averaging,
    /// the embedder's description, the alignment (with the face mesh's bytes) and the
    /// test-time chips. Embeddings with different fingerprints must not
    /// be compared.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Sessions busy and free, callers waiting, refusals (for /healthz and /metrics).
    pub fn pool_status(&self) -> PoolStatus {
        self.pool.status()
    }

    /// Takes one session out of the pool (through the queue like any caller) until the
    /// returned value is dropped.
    pub fn hold_session(&self) -> Result<HeldSession<'_>, Error> {
        Ok(HeldSession {
            _lease: self.pool.acquire_one_core()?,
        })
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, Error> {
        Ok(decode_image(bytes, &self.options.decode_limits)?)
    }

    /// Faces in `image`, largest first, without recognition.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, Error> {
        self.with_session(|s| self.detect_in(s, image))
    }

    /// [`Pipeline::detect`] without the far-face retry, for a camera loop: its frames
    /// are mostly empty (the retry would triple the detection cost of each) and its
    /// faces must be `camera.min_face_px` wide to be recognised, large enough for the
    /// short-range detector at the camera's frame size.
    pub fn detect_near(&self, image: &RgbImage) -> Result<Vec<Detection>, Error> {
        self.with_session(|s| self.detector.detect(&mut s.detector, image, &mut s.scratch))
    }

    /// The detector, then the far-face retry where it applies.
    fn detect_in(&self, s: &mut Session, image: &RgbImage) -> Result<Vec<Detection>, Error> {
        let near = self
            .detector
            .detect(&mut s.detector, image, &mut s.scratch)?;
        match (&self.far, s.far_detector.as_mut()) {
            (Some(far), Some(model)) => far.refine(near, model, image, &mut s.scratch),
            _ => Ok(near),
        }
    }

    /// Decodes, detects and analyses the selected faces (largest first). The picture is
    /// decoded after a session is admitted: waiting callers hold only their bytes.
    pub fn analyze_bytes(
        &self,
        bytes: &[u8],
        selection: FaceSelection,
    ) -> Result<Vec<Face>, Error> {
        self.decode_and_analyze(bytes, selection, Flip::Configured, false)
    }

    /// As [`Pipeline::analyze_bytes`], each face with the crop to store with its
    /// template ([`Face::stored_crop`]): for enrolling.
    pub fn analyze_bytes_to_store(
        &self,
        bytes: &[u8],
        selection: FaceSelection,
    ) -> Result<Vec<Face>, Error> {
        self.decode_and_analyze(bytes, selection, Flip::Configured, true)
    }

    /// As [`Pipeline::analyze_bytes`], the mirrored chip embedded only when `near`
    /// finds the caller's decision close (src/vision/flip.rs).
    pub fn analyze_bytes_deciding(
        &self,
        bytes: &[u8],
        selection: FaceSelection,
        near: &dyn Fn(&Embedding) -> bool,
    ) -> Result<Vec<Face>, Error> {
        self.decode_and_analyze(bytes, selection, Flip::WhenNear(near), false)
    }

    /// Decodes `bytes` once a session is admitted, then analyses the selected faces.
    fn decode_and_analyze(
        &self,
        bytes: &[u8],
        selection: FaceSelection,
        flip: Flip<'_>,
        with_stored_crop: bool,
    ) -> Result<Vec<Face>, Error> {
        self.with_session(|s| {
            let image = self.decode(bytes)?;
            Ok(self
                .analyze_in(s, &image, selection, flip, with_stored_crop)?
                .0)
        })
    }

    /// Decodes every picture, then analyses each, on one admitted session (compare:
    /// a broken second picture is reported before any model runs). An error carries the
    /// position of the picture it is about.
    pub fn analyze_all_bytes(
        &self,
        pictures: &[&[u8]],
        selection: FaceSelection,
    ) -> Result<Vec<Vec<Face>>, (usize, Error)> {
        let mut session = self.pool.acquire().map_err(|e| (0, e.into()))?;
        let _pinned = session.pin_caller();
        let decoded = pictures
            .iter()
            .enumerate()
            .map(|(i, bytes)| self.decode(bytes).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        decoded
            .iter()
            .enumerate()
            .map(|(i, image)| {
                self.analyze_in(&mut session, image, selection, Flip::Configured, false)
                    .map(|(faces, _)| faces)
                    .map_err(|e| (i, e))
            })
            .collect()
    }

    pub fn analyze(&self, image: &RgbImage, selection: FaceSelection) -> Result<Vec<Face>, Error> {
        Ok(self.analyze_timed(image, selection)?.0)
    }

    /// As [`Pipeline::analyze`], also reporting the time of each stage.
    pub fn analyze_timed(
        &self,
        image: &RgbImage,
        selection: FaceSelection,
    ) -> Result<(Vec<Face>, StageTimings), Error> {
        self.with_session(|s| self.analyze_in(s, image, selection, Flip::Configured, false))
    }

    fn analyze_in(
        &self,
        s: &mut Session,
        image: &RgbImage,
        selection: FaceSelection,
        flip: Flip<'_>,
        with_stored_crop: bool,
    ) -> Result<(Vec<Face>, StageTimings), Error> {
        let mut t = StageTimings::default();
        let start = Instant::now();
        let detections = self.detect_in(s, image)?;
        t.detect = start.elapsed();
        let chosen = select(detections, selection, image);
        let mut faces = Vec::with_capacity(chosen.len());
        for detection in chosen {
            let face = self.analyze_one(s, image, detection, flip, with_stored_crop, &mut t)?;
            faces.extend(face);
        }
        Ok((faces, t))
    }

    /// Analyses one face found earlier by [`Pipeline::detect`] in the same `image`
    /// (align, quality, mask, embed) without detecting again. `None` when the face's
    /// keypoints are degenerate.
    pub fn analyze_detection(
        &self,
        image: &RgbImage,
        detection: Detection,
    ) -> Result<Option<Face>, Error> {
        self.with_session(|s| {
            let mut t = StageTimings::default();
            self.analyze_one(s, image, detection, Flip::Configured, false, &mut t)
        })
    }

    /// One face's analysis; `with_stored_crop` also cuts the crop to store with its
    /// template ([`Pipeline::analyze_bytes_to_store`]).
    fn analyze_one(
        &self,
        s: &mut Session,
        image: &RgbImage,
        detection: Detection,
        flip: Flip<'_>,
        with_stored_crop: bool,
        t: &mut StageTimings,
    ) -> Result<Option<Face>, Error> {
        let start = Instant::now();
        let mesh = self.mesh(s, image, &detection)?;
        t.landmarks += start.elapsed();
        let start = Instant::now();
        let Some((aligned, to_chip)) =
            align_with_transform(image, &detection, mesh.as_ref(), &self.chip)
        else {
            return Ok(None);
        };
        let quality = Quality {
            face_px: detection.bbox.width.max(detection.bbox.height),
            detector_score: detection.score,
            frontalness: frontalness(&detection),
        };
        t.align += start.elapsed();
        let start = Instant::now();
        let mask_probability = mask_probability(
            &mut s.mask,
            image,
            &detection.bbox,
            self.options.mask_margin,
            self.mask_side,
            &mut s.scratch,
        )?;
        t.mask += start.elapsed();
        let start = Instant::now();
        let extra = self.extra_chips(image, to_chip);
        let embedding = embed_with(
            &mut s.embedder,
            &aligned,
            &extra,
            self.flip,
            flip,
            &self.spec,
        )?;
        t.embed += start.elapsed();
        let stored_crop = if with_stored_crop {
            stored_crop(image, &aligned, &to_chip, &self.chip, &mut s.scratch)
        } else {
            None
        };
        Ok(Some(Face {
            detection,
            quality,
            mask_probability,
            masked: mask_probability >= self.options.mask_threshold,
            embedding,
            aligned,
            stored_crop,
        }))
    }

    /// The face mesh's landmarks of `detection` with `Alignment::FaceMesh`; `None` with
    /// keypoint alignment, and when the mesh does not see a face there (presence below
    /// [`MIN_PRESENCE`]: the detector's keypoints align it then, as before the mesh).
    fn mesh(
        &self,
        s: &mut Session,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Option<MeshLandmarks>, Error> {
        let Some(model) = s.landmarks.as_mut() else {
            return Ok(None);
        };
        let mesh = mesh_landmarks(model, image, detection, &mut s.scratch)?;
        Ok(mesh.filter(|m| m.presence >= MIN_PRESENCE))
    }

    /// The face mesh's landmarks of a face found by [`Pipeline::detect`] in `image`:
    /// `None` unless the pipeline aligns with the face mesh and the mesh sees a face.
    pub fn landmarks(
        &self,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Option<MeshLandmarks>, Error> {
        self.with_session(|s| self.mesh(s, image, detection))
    }

    /// Where dlib's 5-point template puts its points on this pipeline's chip (`None`
    /// for other crop templates).
    pub fn dlib5_on_chip(&self) -> Option<[super::Point; 5]> {
        super::align::dlib5_on_chip(&self.chip)
    }

    /// The appearance of one face found earlier by [`Pipeline::detect`] in `image`: the
    /// aligned chip embedded once, without the mirrored run and without the mask model
    /// (about a third of [`Pipeline::analyze_detection`]'s model time). For telling
    /// whether two detections show the same face (camera tracks), never for identifying:
    /// it is not comparable with gallery templates. `None` when the keypoints are
    /// degenerate. Always aligned by the detector's keypoints (no face-mesh run).
    pub fn appearance(
        &self,
        image: &RgbImage,
        detection: &super::Detection,
    ) -> Result<Option<Appearance>, Error> {
        let Some(aligned) = align(image, detection, None, &self.chip) else {
            return Ok(None);
        };
        let sharpness = chip_sharpness(&aligned);
        let embedding =
            self.with_session(|s| embed(&mut s.embedder, &aligned, false, &self.spec))?;
        Ok(Some(Appearance {
            embedding,
            sharpness,
        }))
    }

    /// The test-time chips of a face aligned by `to_chip` in `image` (none unless
    /// configured).
    fn extra_chips<'a>(
        &'a self,
        image: &'a RgbImage,
        to_chip: super::warp::Similarity,
    ) -> ExtraChips<'a> {
        ExtraChips {
            image,
            to_chip,
            layout: &self.chip,
            jitters: &self.options.test_time_chips,
        }
    }

    /// The raw embedder output of each chip of `detection` (a face [`Pipeline::detect`]
    /// found in `image`), each with its mirror's when flip averaging is on: the aligned
    /// chip first, then one per test-time chip. A face's embedding is the normalised
    /// sum of these. `None` when the keypoints are degenerate.
    pub fn chip_embedding_sums(
        &self,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Option<Vec<Vec<f32>>>, Error> {
        self.with_session(|s| {
            let mesh = self.mesh(s, image, detection)?;
            let Some((aligned, to_chip)) =
                align_with_transform(image, detection, mesh.as_ref(), &self.chip)
            else {
                return Ok(None);
            };
            let mut sums = vec![embed_sum(&mut s.embedder, &aligned, self.flip, &self.spec)?];
            for c in self.extra_chips(image, to_chip).chips() {
                sums.push(embed_sum(&mut s.embedder, &c, self.flip, &self.spec)?);
            }
            Ok(Some(sums))
        })
    }

    /// Where this pipeline's aligned chips ([`crate::vision::Face::aligned`]) show the
    /// face: stored with each crop so that another embedder can cut its chip from it.
    pub fn crop_points(&self) -> CropPoints {
        self.crop_points
    }

    /// Embeds a face crop stored earlier (re-embedding after a model change, another
    /// device's template), which shows the face at `recorded` (`None`: a crop stored
    /// before points were recorded, see src/vision/stored_crop.rs). A crop in this
    /// embedder's layout is embedded as it is; any other is first cut to this
    /// embedder's chip, black where the crop does not reach. The test-time chips are
    /// cut from the crop too, so they are close to, not exactly, those of the photo.
    /// Returns the points the crop was read with, to be recorded with it.
    pub fn embed_stored_crop(
        &self,
        crop: &RgbImage,
        recorded: Option<&CropPoints>,
    ) -> Result<(Embedding, CropPoints), Error> {
        let (how, to_chip, theirs) = recut(crop, recorded, &self.chip, &self.crop_points)?;
        let chip = chip_from(crop, &how, &self.chip)
            .ok_or_else(|| Error::StoredCrop("face points do not map onto a chip".into()))?;
        let extra = self.extra_chips(crop, to_chip);
        self.with_session(|s| {
            embed_with(
                &mut s.embedder,
                &chip,
                &extra,
                self.flip,
                Flip::Configured,
                &self.spec,
            )
        })
        .map(|embedding| (embedding, theirs))
    }

    /// Mask probability of a whole picture (for tight face crops the detector misses).
    pub fn mask_probability_whole(&self, image: &RgbImage) -> Result<f32, Error> {
        let bbox = super::BoundingBox {
            x: 0.0,
            y: 0.0,
            width: image.width() as f32,
            height: image.height() as f32,
        };
        self.with_session(|s| {
            mask_probability(
                &mut s.mask,
                image,
                &bbox,
                0.0,
                self.mask_side,
                &mut s.scratch,
            )
        })
    }

    /// Runs each stage of one analysis of `detection` (a face [`Pipeline::detect`] found
    /// in `jpeg_or_png`) `iterations` times on one session and returns every sample,
    /// for `facegate bench`. Each iteration is two passes over the same sequence: the
    /// stages, then the bare model runs in the same places (see
    /// [`StageTimings::detect_model_run`]), so each model finds the caches as its stage
    /// did: after the frame's decode, the other models' runs and the previous
    /// iteration. `tick` is called once per iteration (progress output).
    pub fn measure_stages(
        &self,
        jpeg_or_png: &[u8],
        detection: &Detection,
        iterations: usize,
        tick: &dyn Fn(),
    ) -> Result<Vec<StageTimings>, Error> {
        let runs_per_embed =
            (if self.flip { 2 } else { 1 }) * (1 + self.options.test_time_chips.len());
        self.with_session(|s| {
            let aligned = |frame: &RgbImage, mesh: Option<&MeshLandmarks>| {
                align_with_transform(frame, detection, mesh, &self.chip)
                    .ok_or_else(|| Error::ModelOutput("degenerate keypoints".into()))
            };
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let mut t = StageTimings::default();
                let start = Instant::now();
                // The later stages read the frame just decoded, as `analyze_bytes`
                // does: a frame that has left the caches since would charge the
                // detector for memory traffic that the pipeline never pays.
                let frame = &std::hint::black_box(self.decode(jpeg_or_png)?);
                t.decode = start.elapsed();
                let start = Instant::now();
                // The far-face retry included, where it runs.
                std::hint::black_box(self.detect_in(s, frame)?);
                t.detect = start.elapsed();
                let start = Instant::now();
                let mesh = self.mesh(s, frame, detection)?;
                t.landmarks = start.elapsed();
                let start = Instant::now();
                let (chip, to_chip) = aligned(frame, mesh.as_ref())?;
                t.align = start.elapsed();
                let start = Instant::now();
                std::hint::black_box(mask_probability(
                    &mut s.mask,
                    frame,
                    &detection.bbox,
                    self.options.mask_margin,
                    self.mask_side,
                    &mut s.scratch,
                )?);
                t.mask = start.elapsed();
                let start = Instant::now();
                let extra = self.extra_chips(frame, to_chip);
                std::hint::black_box(embed_with(
                    &mut s.embedder,
                    &chip,
                    &extra,
                    self.flip,
                    Flip::Configured,
                    &self.spec,
                )?);
                t.embed = start.elapsed();

                // The same sequence with the bare runs (inputs as the stages left them).
                let frame = &std::hint::black_box(self.decode(jpeg_or_png)?);
                t.detect_model_run = time_run(&mut s.detector)?;
                if let Some(model) = s.landmarks.as_mut() {
                    t.landmarks_model_run = time_run(model)?;
                }
                std::hint::black_box(aligned(frame, mesh.as_ref())?);
                t.mask_model_run = time_run(&mut s.mask)?;
                for _ in 0..runs_per_embed {
                    t.embed_model_run += time_run(&mut s.embedder)?;
                }
                samples.push(t);
                tick();
            }
            Ok(samples)
        })
    }

    fn with_session<T>(
        &self,
        work: impl FnOnce(&mut Session) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // The lease returns the session when dropped, also if `work` panics.
        let mut session = self.pool.acquire()?;
        let _pinned = session.pin_caller();
        work(&mut session)
    }
}

/// The idle-machine session, its models' worker threads started off the core its
/// callers will be pinned to when `pin` is set (src/runtime/cores.rs).
fn idle_machine_session(
    threads: usize,
    pin: bool,
    build: impl Fn(usize) -> Result<Session, Error>,
) -> Result<Session, Error> {
    match CoreSplit::of_this_thread().filter(|_| pin) {
        Some(cores) => {
            let mut session = cores.build_workers(|| build(threads))?;
            tracing::debug!(
                caller_core = cores.caller_core(),
                worker_cores = ?cores.worker_cores(),
                "idle-machine session: caller and model workers on distinct cores"
            );
            session.cores = Some(cores);
            Ok(session)
        }
        None => build(threads),
    }
}

fn time_run(model: &mut Model) -> Result<Duration, Error> {
    let start = Instant::now();
    model.run()?;
    Ok(start.elapsed())
}

fn select(
    mut detections: Vec<Detection>,
    selection: FaceSelection,
    image: &RgbImage,
) -> Vec<Detection> {
    match selection {
        FaceSelection::All => detections,
        FaceSelection::Largest => {
            detections.truncate(1);
            detections
        }
        FaceSelection::NearestCenter => {
            let (cx, cy) = (image.width() as f32 / 2.0, image.height() as f32 / 2.0);
            let dist = |d: &Detection| {
                let c = d.bbox.center();
                (c.x - cx).powi(2) + (c.y - cy).powi(2)
            };
            detections
                .into_iter()
                .min_by(|a, b| dist(a).total_cmp(&dist(b)))
                .into_iter()
                .collect()
        }
    }
}

/// The full-range detector's bytes for the far-face retry: with the short-range
/// detector and a retry score above 0. A models folder without the file (an operator's
/// own, made before the retry existed) runs without it, with a warning.
fn far_detector_bytes(options: &PipelineOptions) -> Option<Vec<u8>> {
    if options.detector != DetectorKind::ShortRange || options.far_face_retry_below <= 0.0 {
        return None;
    }
    let path = options.models_dir.join(DetectorKind::FullRange.file_name());
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "no full-range detector: faces smaller than about a fifth of the frame \
                 are not found (recognition.far_face_retry_below)"
            );
            None
        }
    }
}

/// The shipped dlib description adds nothing to its file bytes, chip and flip, so its
/// fingerprint stays what it was before descriptions existed (stored templates stay
/// valid); any other description, or a changed calibration, is hashed in. So is the
/// face mesh (`mesh`: its file's bytes) when it aligns the faces; keypoint alignment
/// adds nothing, for the same reason. Test-time chips are hashed in when there are any.
fn fingerprint(
    embedder: &[u8],
    chip: &ChipLayout,
    flip: bool,
    spec: &EmbedderSpec,
    mesh: Option<&[u8]>,
    test_time_chips: &[ChipJitter],
) -> String {
    let mut h = Sha256::new();
    h.update(embedder);
    let mut described = spec.clone();
    if let CropTemplate::DlibChip { padding } = &mut described.crop {
        *padding = 0.25;
    }
    match &chip.template {
        CropTemplate::DlibChip { padding } if chip.width == chip.height => h.update(format!(
            "chip={}x{} pad={} flip={}",
            chip.width, chip.height, padding, flip
        )),
        other => h.update(format!(
            "chip={}x{} crop={other:?} flip={}",
            chip.width, chip.height, flip
        )),
    }
    if described.fingerprint_text() != EmbedderSpec::dlib().fingerprint_text() {
        h.update(spec.fingerprint_text());
    }
    if chip.width != chip.height {
        // Chips that are not square were cut with a distorted template before the
        // template's square became the chip's height, centred: templates stored then
        // must not match the ones cut now.
        h.update(b"template_square=height_centred");
    }
    if let Some(mesh) = mesh {
        h.update(b"align=face_mesh");
        h.update(mesh);
    }
    h.update(super::jitter::fingerprint_text(test_time_chips));
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
