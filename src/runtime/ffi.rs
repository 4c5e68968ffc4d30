//! The slice of the LiteRT 2.1.4 C API that facegate uses, resolved at run time from
//! `libLiteRt.so` with `libloading`.
//!
//! Why run-time loading: no registry ships LiteRT headers plus a linkable library that
//! `cargo build` could use offline, and a daemon that cannot find its runtime should say
//! so in plain words instead of failing in the dynamic loader before `main`.
//!
//! This is the only module with `unsafe` code. Declarations follow the C headers of
//! LiteRT 2.1.4 (`litert/c/*.h`); the struct layouts below are checked by the size
//! assertions at the bottom of the file, which mirror the headers' own `static_assert`s.

#![allow(unsafe_code)]
// Field names are the C symbol names they are resolved from.
#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::path::Path;

use libloading::Library;

use super::element::ElementType;

pub type Status = c_int;
pub const STATUS_OK: Status = 0;

pub type Handle = *mut c_void;
pub type ParamIndex = usize;

pub const MAX_RANK: usize = 8;

/// `LiteRtLayout`: `unsigned rank:7; bool has_strides:1;` share the first 32-bit unit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub rank_and_flags: u32,
    pub dimensions: [i32; MAX_RANK],
    pub strides: [u32; MAX_RANK],
}

impl Layout {
    pub fn rank(&self) -> usize {
        (self.rank_and_flags & 0x7f) as usize
    }
}

/// `LiteRtRankedTensorType`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RankedTensorType {
    pub element_type: c_uint,
    pub layout: Layout,
}

/// `LiteRtQuantizationPerTensor`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QuantizationPerTensor {
    pub scale: f32,
    pub zero_point: i64,
}

pub const QUANTIZATION_PER_TENSOR: c_uint = 1;
pub const HW_ACCELERATOR_CPU: c_int = 1;

pub type HostMemoryDeallocator = Option<unsafe extern "C" fn(*mut c_void)>;
pub type PayloadDestructor = Option<unsafe extern "C" fn(*mut c_void)>;

macro_rules! api_table {
    ($( $field:ident : fn($($arg:ty),*) $(-> $ret:ty)? ; )*) => {
        /// Function pointers resolved from the library. The `Library` is kept alive
        /// alongside them, which is what makes calling them sound.
        pub struct Api {
            $( pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            _library: Library,
        }

        impl Api {
            /// Opens the library and resolves every symbol facegate needs.
            pub fn open(path: &Path) -> Result<Api, String> {
                // SAFETY: loading a shared library runs its initialisers. The path is the
                // LiteRT library chosen by the operator; we have no way to validate its
                // code, only its exported symbols, which is what the lookups below do.
                // RTLD_NODELETE: LiteRT registers process-wide state (accelerator
                // registry, XNNPACK caches) that its static destructors tear down at exit;
                // unmapping the library earlier makes those destructors crash.
                let library: Library = unsafe {
                    libloading::os::unix::Library::open(
                        Some(path),
                        libloading::os::unix::RTLD_NOW | libc_rtld_nodelete(),
                    )
                }
                .map_err(|e| e.to_string())?
                .into();
                $(
                    // SAFETY: the symbol's type is the C prototype from the LiteRT 2.1.4
                    // headers; the pointer is only used while `_library` is alive (it is
                    // stored in the same struct and dropped last).
                    let $field = unsafe {
                        *library
                            .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!(stringify!($field), "\0").as_bytes(),
                            )
                            .map_err(|e| format!("symbol {}: {e}", stringify!($field)))?
                    };
                )*
                Ok(Api { $( $field, )* _library: library })
            }
        }
    };
}

api_table! {
    LiteRtCreateEnvironment: fn(c_int, *const c_void, *mut Handle) -> Status;
    LiteRtDestroyEnvironment: fn(Handle);
    LiteRtCreateModelFromBuffer: fn(*const c_void, usize, *mut Handle) -> Status;
    LiteRtDestroyModel: fn(Handle);
    LiteRtGetNumModelSignatures: fn(Handle, *mut ParamIndex) -> Status;
    LiteRtGetModelSignature: fn(Handle, ParamIndex, *mut Handle) -> Status;
    LiteRtGetNumSignatureInputs: fn(Handle, *mut ParamIndex) -> Status;
    LiteRtGetNumSignatureOutputs: fn(Handle, *mut ParamIndex) -> Status;
    LiteRtGetSignatureInputTensorByIndex: fn(Handle, ParamIndex, *mut Handle) -> Status;
    LiteRtGetSignatureOutputTensorByIndex: fn(Handle, ParamIndex, *mut Handle) -> Status;
    LiteRtGetTensorName: fn(Handle, *mut *const c_char) -> Status;
    LiteRtGetRankedTensorType: fn(Handle, *mut RankedTensorType) -> Status;
    LiteRtGetQuantizationTypeId: fn(Handle, *mut c_uint) -> Status;
    LiteRtGetPerTensorQuantization: fn(Handle, *mut QuantizationPerTensor) -> Status;
    LiteRtCreateOptions: fn(*mut Handle) -> Status;
    LiteRtDestroyOptions: fn(Handle);
    LiteRtSetOptionsHardwareAccelerators: fn(Handle, c_int) -> Status;
    LiteRtCreateOpaqueOptions: fn(*const c_char, *mut c_void, PayloadDestructor, *mut Handle) -> Status;
    LiteRtAddOpaqueOptions: fn(Handle, Handle) -> Status;
    LiteRtCreateCompiledModel: fn(Handle, Handle, Handle, *mut Handle) -> Status;
    LiteRtDestroyCompiledModel: fn(Handle);
    LiteRtRunCompiledModel: fn(Handle, ParamIndex, usize, *mut Handle, usize, *mut Handle) -> Status;
    LiteRtCreateTensorBufferFromHostMemory: fn(*const RankedTensorType, *mut c_void, usize, HostMemoryDeallocator, *mut Handle) -> Status;
    LiteRtDestroyTensorBuffer: fn(Handle);
}

/// `RTLD_NODELETE` from glibc's <dlfcn.h> (same value on x86_64 and aarch64).
const fn libc_rtld_nodelete() -> std::ffi::c_int {
    0x01000
}

/// Names of `LiteRtStatus` codes (litert_common.h). The library does not export
/// `LiteRtGetStatusString`, so the table lives here.
pub fn status_text(status: Status) -> String {
    let name = match status {
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        7 => "timeout expired",
        8 => "wrong version",
        9 => "unknown error",
        10 => "already exists",
        100 => "cancelled",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        502 => "dynamic loading error",
        503 => "serialization error",
        504 => "compilation error",
        1000 => "index out of bounds",
        _ => "error",
    };
    format!("{name} (LiteRtStatus {status})")
}

/// Host memory for one tensor, 64-byte aligned as `LITERT_HOST_MEMORY_BUFFER_ALIGNMENT`
/// requires, wrapped in a LiteRT tensor buffer that points at it (no copy on run).
pub struct HostTensor {
    ptr: *mut u8,
    len: usize,
    layout: std::alloc::Layout,
    pub buffer: Handle,
}

const HOST_ALIGNMENT: usize = 64;
/// The largest tensor facegate allocates host memory for.
const MAX_TENSOR_BYTES: usize = 1 << 30;

impl HostTensor {
    pub fn new(api: &Api, tensor_type: &RankedTensorType, len: usize) -> Result<Self, String> {
        let size = len.max(1).div_ceil(HOST_ALIGNMENT) * HOST_ALIGNMENT;
        let layout =
            std::alloc::Layout::from_size_align(size, HOST_ALIGNMENT).map_err(|e| e.to_string())?;
        // SAFETY: `layout` has a non-zero size (at least HOST_ALIGNMENT bytes).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(format!("cannot allocate {size} bytes for a tensor"));
        }
        let mut buffer: Handle = std::ptr::null_mut();
        // SAFETY: `ptr` is valid for `size` >= `len` bytes and outlives the buffer: the
        // buffer is destroyed in `drop` before the memory is freed. No deallocator is
        // passed, so LiteRT never frees our memory.
        let status = unsafe {
            (api.LiteRtCreateTensorBufferFromHostMemory)(
                tensor_type,
                ptr.cast(),
                size,
                None,
                &mut buffer,
            )
        };
        if status != STATUS_OK {
            // SAFETY: allocated above with the same layout, not handed to anyone.
            unsafe { std::alloc::dealloc(ptr, layout) };
            return Err(status_text(status));
        }
        Ok(HostTensor {
            ptr,
            len,
            layout,
            buffer,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised (zeroed at allocation) bytes for
        // the lifetime of `self`; LiteRT writes to it only inside `run`, which takes
        // `&mut` of the owning model, so no shared borrow is alive then.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn f32s(&self) -> &[f32] {
        // SAFETY: the pointer is 64-byte aligned (so aligned for f32) and `len / 4`
        // f32 values fit in the allocation; every bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<f32>(), self.len / 4) }
    }

    pub fn f32s_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `f32s`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<f32>(), self.len / 4) }
    }

    pub fn destroy(&mut self, api: &Api) {
        if !self.buffer.is_null() {
            // SAFETY: created by LiteRtCreateTensorBufferFromHostMemory and destroyed
            // once (the handle is nulled right after).
            unsafe { (api.LiteRtDestroyTensorBuffer)(self.buffer) };
            self.buffer = std::ptr::null_mut();
        }
        if !self.ptr.is_null() {
            // SAFETY: allocated in `new` with `self.layout`; the tensor buffer that
            // pointed at it is gone.
            unsafe { std::alloc::dealloc(self.ptr, self.layout) };
            self.ptr = std::ptr::null_mut();
        }
    }
}

/// Payload destructor for the CPU options string handed to `LiteRtCreateOpaqueOptions`.
///
/// # Safety
/// `payload` must come from `CString::into_raw` and be passed here exactly once, which
/// LiteRT guarantees for an opaque option's destructor.
pub unsafe extern "C" fn free_c_string(payload: *mut c_void) {
    if !payload.is_null() {
        // SAFETY: see the function's contract.
        drop(unsafe { std::ffi::CString::from_raw(payload.cast()) });
    }
}

// The C headers assert these sizes for 64-bit targets; a mismatch here would mean our
// declarations drifted from the library's ABI.
const _: () = assert!(std::mem::size_of::<Layout>() == 68);
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);
const _: () = assert!(std::mem::size_of::<QuantizationPerTensor>() == 16);

/// Shape, element type and quantization of one model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// The shape facegate runs: the model's, with an open batch dimension set to 1.
    pub shape: Vec<i32>,
    pub element_type: ElementType,
    /// Per-tensor `(scale, zero_point)`: `real = (q - zero_point) * scale`.
    pub quantization: Option<(f32, i64)>,
}

impl TensorInfo {
    pub fn element_count(&self) -> usize {
        self.shape.iter().map(|&d| d.max(1) as usize).product()
    }

    /// How real values are stored in this tensor: `None` for float32 (as they are),
    /// `Some((scale, zero_point, signed))` for int8/uint8 with a usable per-tensor
    /// quantization. Any other tensor cannot hold real values for facegate; the error
    /// says why.
    pub fn real_value_encoding(&self) -> Result<Option<(f32, i64, bool)>, String> {
        let signed = match self.element_type {
            ElementType::Float32 => return Ok(None),
            ElementType::Int8 => true,
            ElementType::UInt8 => false,
            other => {
                return Err(format!(
                    "{:?} is {other}; facegate takes float32, int8 or uint8",
                    self.name
                ))
            }
        };
        match self.quantization {
            Some((scale, zero_point)) if scale > 0.0 && scale.is_finite() => {
                Ok(Some((scale, zero_point, signed)))
            }
            _ => Err(format!(
                "{:?} is {} without a per-tensor scale and zero point",
                self.name, self.element_type
            )),
        }
    }
}

/// One compiled model with its own environment and host tensors. Nothing in it is
/// shared with another `Session`, which is what makes sending it to another thread sound.
/// The LiteRT environment, created once per process and shared by every model.
pub struct Environment {
    pub api: Api,
    handle: Handle,
}

// SAFETY: after creation the environment is only read by LiteRT (compiled models keep a
// pointer to it and look up the registered CPU accelerator); facegate never mutates it.
// It is destroyed once, in Drop, when the last Arc holder (a Runtime or Session) is gone.
unsafe impl Send for Environment {}
// SAFETY: as above; concurrent compilation of models against one environment is how
// LiteRT's own C++ API is used (one Environment per process).
unsafe impl Sync for Environment {}

impl Environment {
    pub fn new(api: Api) -> Result<Environment, String> {
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: no options are passed (count 0, null pointer); `handle` is a valid
        // out-pointer.
        check(
            unsafe { (api.LiteRtCreateEnvironment)(0, std::ptr::null(), &mut handle) },
            "create environment",
        )?;
        Ok(Environment { api, handle })
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once; every Session holds an Arc to this
        // Environment, so no compiled model outlives it.
        unsafe { (self.api.LiteRtDestroyEnvironment)(self.handle) };
    }
}

pub struct Session {
    env: std::sync::Arc<Environment>,
    model: Handle,
    compiled: Handle,
    // Kept alive for `model`: LiteRtCreateModelFromBuffer does not copy the bytes.
    _model_bytes: Vec<u8>,
    pub inputs: Vec<(TensorInfo, HostTensor)>,
    pub outputs: Vec<(TensorInfo, HostTensor)>,
}

// SAFETY: a Session owns every LiteRT object it points to (environment, model, compiled
// model, tensor buffers and their memory); none is reachable from elsewhere, so moving
// the whole set to another thread is sound. It is not Sync: `run` needs `&mut self`.
unsafe impl Send for Session {}

fn check(status: Status, what: &str) -> Result<(), String> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(format!("{what}: {}", status_text(status)))
    }
}

impl Session {
    pub fn new(
        env: std::sync::Arc<Environment>,
        model_bytes: Vec<u8>,
        threads: usize,
    ) -> Result<Session, String> {
        let mut session = Session {
            env,
            model: std::ptr::null_mut(),
            compiled: std::ptr::null_mut(),
            _model_bytes: model_bytes,
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        // On any error below, `session` is dropped and releases what was created.
        session.build(threads)?;
        Ok(session)
    }

    fn build(&mut self, threads: usize) -> Result<(), String> {
        let env = self.env.clone();
        let api = &env.api;
        // SAFETY (all calls in this function): each out-pointer is a valid local or
        // field; handles passed in were returned by LiteRT above and not destroyed yet;
        // `_model_bytes` lives as long as `self.model`.
        unsafe {
            check(
                (api.LiteRtCreateModelFromBuffer)(
                    self._model_bytes.as_ptr().cast(),
                    self._model_bytes.len(),
                    &mut self.model,
                ),
                "read model",
            )?;
            let mut options: Handle = std::ptr::null_mut();
            check((api.LiteRtCreateOptions)(&mut options), "create options")?;
            let compiled = self.compile_with(options, threads);
            (api.LiteRtDestroyOptions)(options);
            compiled?;

            let mut signatures = 0usize;
            check(
                (api.LiteRtGetNumModelSignatures)(self.model, &mut signatures),
                "signature count",
            )?;
            if signatures == 0 {
                return Err("model has no signature".into());
            }
            let mut signature: Handle = std::ptr::null_mut();
            check(
                (api.LiteRtGetModelSignature)(self.model, 0, &mut signature),
                "model signature",
            )?;
            let (mut n_in, mut n_out) = (0usize, 0usize);
            check(
                (api.LiteRtGetNumSignatureInputs)(signature, &mut n_in),
                "input count",
            )?;
            check(
                (api.LiteRtGetNumSignatureOutputs)(signature, &mut n_out),
                "output count",
            )?;
            for i in 0..n_in {
                let mut tensor: Handle = std::ptr::null_mut();
                check(
                    (api.LiteRtGetSignatureInputTensorByIndex)(signature, i, &mut tensor),
                    "input tensor",
                )?;
                let entry = self.host_tensor(tensor)?;
                self.inputs.push(entry);
            }
            for i in 0..n_out {
                let mut tensor: Handle = std::ptr::null_mut();
                check(
                    (api.LiteRtGetSignatureOutputTensorByIndex)(signature, i, &mut tensor),
                    "output tensor",
                )?;
                let entry = self.host_tensor(tensor)?;
                self.outputs.push(entry);
            }
        }
        Ok(())
    }

    /// Compiles for the CPU (XNNPACK) with `threads` threads.
    ///
    /// # Safety
    /// `options` must be a live LiteRtOptions handle owned by the caller.
    unsafe fn compile_with(&mut self, options: Handle, threads: usize) -> Result<(), String> {
        let env = self.env.clone();
        let api = &env.api;
        // SAFETY: see the function's contract; the payload string is handed over with
        // its destructor, and LiteRtAddOpaqueOptions takes ownership of the opaque
        // options (litert_options.h), so neither is freed here.
        unsafe {
            check(
                (api.LiteRtSetOptionsHardwareAccelerators)(options, HW_ACCELERATOR_CPU),
                "select CPU",
            )?;
            // LiteRT 2.1.4 reads CPU options from an opaque option whose identifier is
            // "xnnpack" and whose payload is a TOML string (litert_cpu_options.cc); the
            // library does not export the Lrt*CpuOptions helpers, so we build it here.
            let payload = std::ffi::CString::new(format!("num_threads = {}\n", threads.max(1)))
                .map_err(|e| e.to_string())?;
            let mut cpu: Handle = std::ptr::null_mut();
            let payload_ptr = payload.into_raw();
            let status = (api.LiteRtCreateOpaqueOptions)(
                c"xnnpack".as_ptr(),
                payload_ptr.cast(),
                Some(free_c_string),
                &mut cpu,
            );
            if status != STATUS_OK {
                free_c_string(payload_ptr.cast());
                return check(status, "CPU options");
            }
            check(
                (api.LiteRtAddOpaqueOptions)(options, cpu),
                "add CPU options",
            )?;
            check(
                (api.LiteRtCreateCompiledModel)(
                    env.handle,
                    self.model,
                    options,
                    &mut self.compiled,
                ),
                "compile model",
            )
        }
    }

    /// # Safety
    /// `tensor` must be a tensor handle of `self.model`.
    unsafe fn host_tensor(&self, tensor: Handle) -> Result<(TensorInfo, HostTensor), String> {
        let api = &self.env.api;
        let mut ranked = RankedTensorType {
            element_type: 0,
            layout: Layout {
                rank_and_flags: 0,
                dimensions: [0; MAX_RANK],
                strides: [0; MAX_RANK],
            },
        };
        // SAFETY: see the function's contract; out-pointers are valid locals.
        unsafe {
            check(
                (api.LiteRtGetRankedTensorType)(tensor, &mut ranked),
                "tensor type",
            )?;
            let mut name_ptr: *const c_char = std::ptr::null();
            let name = if (api.LiteRtGetTensorName)(tensor, &mut name_ptr) == STATUS_OK
                && !name_ptr.is_null()
            {
                std::ffi::CStr::from_ptr(name_ptr)
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            let mut quant_kind: c_uint = 0;
            let mut quantization = None;
            if (api.LiteRtGetQuantizationTypeId)(tensor, &mut quant_kind) == STATUS_OK
                && quant_kind == QUANTIZATION_PER_TENSOR
            {
                let mut q = QuantizationPerTensor::default();
                check(
                    (api.LiteRtGetPerTensorQuantization)(tensor, &mut q),
                    "quantization",
                )?;
                quantization = Some((q.scale, q.zero_point));
            }
            let rank = ranked.layout.rank().min(MAX_RANK);
            let declared = ranked.layout.dimensions[..rank].to_vec();
            // A batch dimension left open (-1, as Keras saves a model built without a
            // fixed batch) runs as a batch of one: facegate feeds one image at a time,
            // and the compiled model takes the concrete shape from the buffer.
            if rank > 0 && ranked.layout.dimensions[0] < 0 {
                ranked.layout.dimensions[0] = 1;
            }
            let info = TensorInfo {
                name,
                shape: ranked.layout.dimensions[..rank].to_vec(),
                element_type: ElementType::from_code(ranked.element_type),
                quantization,
            };
            if info.shape.iter().any(|&d| d < 0) {
                return Err(format!(
                    "tensor {} has shape {declared:?}: only the first (batch) dimension \
                     may be left open (-1); convert the model with a fixed input size",
                    info.name
                ));
            }
            let Some(element_size) = info.element_type.size() else {
                return Err(format!(
                    "tensor {} is of type {}, which facegate cannot hold",
                    info.name, info.element_type
                ));
            };
            // A file's shape can claim anything; no face model has a tensor near 1 GiB.
            let bytes = info
                .shape
                .iter()
                .try_fold(element_size, |n, &d| n.checked_mul(d.max(1) as usize))
                .filter(|&n| n <= MAX_TENSOR_BYTES)
                .ok_or_else(|| {
                    format!(
                        "tensor {} of shape {:?} ({}) is larger than facegate holds (1 GiB)",
                        info.name, info.shape, info.element_type
                    )
                })?;
            let host = HostTensor::new(api, &ranked, bytes)?;
            Ok((info, host))
        }
    }

    pub fn run(&mut self) -> Result<(), String> {
        let mut ins: Vec<Handle> = self.inputs.iter().map(|(_, t)| t.buffer).collect();
        let mut outs: Vec<Handle> = self.outputs.iter().map(|(_, t)| t.buffer).collect();
        // SAFETY: `compiled` and every buffer handle are live and owned by `self`;
        // `&mut self` guarantees no slice of their memory is borrowed during the run.
        let status = unsafe {
            (self.env.api.LiteRtRunCompiledModel)(
                self.compiled,
                0,
                ins.len(),
                ins.as_mut_ptr(),
                outs.len(),
                outs.as_mut_ptr(),
            )
        };
        check(status, "run model")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let env = self.env.clone();
        let api = &env.api;
        for (_, t) in self.inputs.iter_mut().chain(self.outputs.iter_mut()) {
            t.destroy(api);
        }
        // SAFETY: each handle was created by LiteRT and is destroyed once, compiled model
        // before model; the environment is dropped with the last Arc.
        unsafe {
            if !self.compiled.is_null() {
                (api.LiteRtDestroyCompiledModel)(self.compiled);
            }
            if !self.model.is_null() {
                (api.LiteRtDestroyModel)(self.model);
            }
        }
    }
}
