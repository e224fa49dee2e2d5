//! The convolution through cuDNN's graph (backend) API, the way PyTorch
//! runs it: one convolution node, compute in f32, and an engine from cuDNN's
//! heuristic for the shape. The legacy calls ([`super::cudnn`]) reach only
//! the engines behind the five algorithm names; this reaches every engine
//! the heuristic offers for the card, such as Hopper's own kernels.
//!
//! [`Call::Graph`](super::Call::Graph)`(rank)` runs the rank-th engine the
//! heuristic (mode A) ranks for the shape, counting only those that need no
//! compilation at run time (NVRTC would add seconds to a shape's first call)
//! and whose plan finalizes. A plan is built once per shape, rank and
//! thread (a cuDNN handle belongs to one thread), and kept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::cudnn::{CudnnDataType, result, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use candle_core::cuda_backend::{CudaDType, DeviceId};
use candle_core::{CudaDevice, DType, Result, Tensor};

use super::cudnn::{Dims, dims, output_and_workspace, tensor, view};
use super::{ConvArgs, MemoryFormat};

use sys::cudnnBackendAttributeName_t as Attr;
use sys::cudnnBackendAttributeType_t as Type;
use sys::cudnnBackendDescriptorType_t as Kind;

/// The alignment a plan is built for, and checked on every operand at run
/// time (candle's allocations are aligned far wider; a view into one at an
/// odd offset is refused rather than misread).
const ALIGNMENT: usize = 16;

/// The ids of the operands in the graph and in the variant pack.
const X: i64 = 1;
const W: i64 = 2;
const Y: i64 = 3;

/// What a plan is built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    x: [i32; 4],
    w: [i32; 4],
    y: [i32; 4],
    padding: usize,
    stride: usize,
    format: MemoryFormat,
    dtype: DType,
    device: DeviceId,
    rank: usize,
}

/// A cuDNN handle of this thread on one device's stream, which it keeps
/// alive (dropped after the handle).
struct Handle(sys::cudnnHandle_t, Arc<CudaStream>);

impl Drop for Handle {
    // The handle is cuDNN's; destroying it once is what it asks.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and dropped once.
        let _ = unsafe { result::destroy_handle(self.0) };
    }
}

/// A backend descriptor, destroyed with its owner.
struct Descriptor(sys::cudnnBackendDescriptor_t);

impl Drop for Descriptor {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: created by cudnnBackendCreateDescriptor and dropped once.
        let _ = unsafe { sys::cudnnBackendDestroyDescriptor(self.0) };
    }
}

/// A cuDNN status as a candle error saying which step refused.
fn check(status: sys::cudnnStatus_t, what: &str) -> Result<()> {
    status
        .result()
        .map_err(|error| candle_core::Error::Msg(format!("cuDNN graph: {what}: {error}")))
}

// Every attribute goes through `set`, whose type tag must describe the
// values' layout: the typed setters below are the only callers.
#[allow(unsafe_code)]
impl Descriptor {
    fn new(kind: Kind) -> Result<Self> {
        let mut raw: sys::cudnnBackendDescriptor_t = std::ptr::null_mut();
        // SAFETY: cuDNN writes one descriptor pointer.
        check(
            unsafe { sys::cudnnBackendCreateDescriptor(kind, &mut raw) },
            "create",
        )?;
        Ok(Self(raw))
    }

    /// # Safety
    /// `values` must hold `count` elements of the type `ty` names.
    unsafe fn set(&self, name: Attr, ty: Type, count: usize, values: *const c_void) -> Result<()> {
        // SAFETY: per this function's contract; cuDNN copies the values.
        let status =
            unsafe { sys::cudnnBackendSetAttribute(self.0, name, ty, count as i64, values) };
        check(status, &format!("{name:?}"))
    }

    fn set_i64s(&self, name: Attr, values: &[i64]) -> Result<()> {
        // SAFETY: i64 values, as CUDNN_TYPE_INT64 reads them.
        unsafe {
            self.set(
                name,
                Type::CUDNN_TYPE_INT64,
                values.len(),
                values.as_ptr().cast(),
            )
        }
    }

    fn set_f32(&self, name: Attr, value: f32) -> Result<()> {
        // SAFETY: one f32, as CUDNN_TYPE_FLOAT reads it.
        unsafe { self.set(name, Type::CUDNN_TYPE_FLOAT, 1, (&raw const value).cast()) }
    }

    fn set_data_type(&self, name: Attr, value: sys::cudnnDataType_t) -> Result<()> {
        // SAFETY: one cudnnDataType_t, as CUDNN_TYPE_DATA_TYPE reads it.
        unsafe {
            self.set(
                name,
                Type::CUDNN_TYPE_DATA_TYPE,
                1,
                (&raw const value).cast(),
            )
        }
    }

    fn set_handle(&self, name: Attr, handle: &Handle) -> Result<()> {
        // SAFETY: one cudnnHandle_t, as CUDNN_TYPE_HANDLE reads it.
        unsafe {
            self.set(
                name,
                Type::CUDNN_TYPE_HANDLE,
                1,
                (&raw const handle.0).cast(),
            )
        }
    }

    fn set_descriptors(&self, name: Attr, values: &[&Descriptor]) -> Result<()> {
        let raw: Vec<sys::cudnnBackendDescriptor_t> = values.iter().map(|d| d.0).collect();
        // SAFETY: descriptor pointers, as CUDNN_TYPE_BACKEND_DESCRIPTOR reads them.
        unsafe {
            let ty = Type::CUDNN_TYPE_BACKEND_DESCRIPTOR;
            self.set(name, ty, raw.len(), raw.as_ptr().cast())
        }
    }

    fn set_conv_mode(&self, name: Attr, value: sys::cudnnConvolutionMode_t) -> Result<()> {
        // SAFETY: one cudnnConvolutionMode_t, as CUDNN_TYPE_CONVOLUTION_MODE reads it.
        unsafe {
            self.set(
                name,
                Type::CUDNN_TYPE_CONVOLUTION_MODE,
                1,
                (&raw const value).cast(),
            )
        }
    }

    fn set_heur_mode(&self, name: Attr, value: sys::cudnnBackendHeurMode_t) -> Result<()> {
        // SAFETY: one cudnnBackendHeurMode_t, as CUDNN_TYPE_HEUR_MODE reads it.
        unsafe {
            self.set(
                name,
                Type::CUDNN_TYPE_HEUR_MODE,
                1,
                (&raw const value).cast(),
            )
        }
    }

    fn finalize(&self, what: &str) -> Result<()> {
        // SAFETY: a descriptor of ours with its attributes set.
        check(unsafe { sys::cudnnBackendFinalize(self.0) }, what)
    }

    fn get_i64(&self, name: Attr) -> Result<i64> {
        let (mut value, mut count) = (0i64, 0i64);
        // SAFETY: room for the one i64 requested.
        let status = unsafe {
            let ty = Type::CUDNN_TYPE_INT64;
            let out = (&raw mut value).cast();
            sys::cudnnBackendGetAttribute(self.0, name, ty, 1, &mut count, out)
        };
        check(status, &format!("{name:?}"))?;
        Ok(value)
    }

    /// How many descriptors `name` holds.
    fn count_descriptors(&self, name: Attr) -> Result<usize> {
        let mut count = 0i64;
        // SAFETY: nothing requested, so nothing written but the count.
        let status = unsafe {
            let ty = Type::CUDNN_TYPE_BACKEND_DESCRIPTOR;
            sys::cudnnBackendGetAttribute(self.0, name, ty, 0, &mut count, std::ptr::null_mut())
        };
        check(status, &format!("{name:?} count"))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// `name`'s descriptors copied into `into` (created by the caller, of
    /// the kind `name` holds); how many were.
    fn get_descriptors(&self, name: Attr, into: &[Descriptor]) -> Result<usize> {
        let mut raw: Vec<sys::cudnnBackendDescriptor_t> = into.iter().map(|d| d.0).collect();
        let mut count = 0i64;
        // SAFETY: `raw` holds `into.len()` created descriptors for cuDNN to fill.
        let status = unsafe {
            let ty = Type::CUDNN_TYPE_BACKEND_DESCRIPTOR;
            let out = raw.as_mut_ptr().cast();
            sys::cudnnBackendGetAttribute(self.0, name, ty, raw.len() as i64, &mut count, out)
        };
        check(status, &format!("{name:?}"))?;
        Ok(usize::try_from(count).unwrap_or(0).min(into.len()))
    }

    /// Whether this engine compiles its kernel at run time.
    fn compiles_at_run_time(&self) -> Result<bool> {
        // Read as plain integers: cuDNN may name notes this binding lacks.
        let mut notes = [0u32; 16];
        let mut count = 0i64;
        // SAFETY: room for the 16 notes requested, each a 32-bit enum.
        let status = unsafe {
            let ty = Type::CUDNN_TYPE_BEHAVIOR_NOTE;
            let out = notes.as_mut_ptr().cast();
            let name = Attr::CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE;
            sys::cudnnBackendGetAttribute(self.0, name, ty, notes.len() as i64, &mut count, out)
        };
        check(status, "CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE")?;
        let runtime =
            sys::cudnnBackendBehaviorNote_t::CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION as u32;
        let count = usize::try_from(count).unwrap_or(0).min(notes.len());
        Ok(notes[..count].contains(&runtime))
    }
}

/// A finalized execution plan and everything it was built from.
struct Plan {
    plan: Descriptor,
    workspace: usize,
    /// cuDNN's global index of the engine, for the logs.
    engine: i64,
    // Kept alive with the plan, which was built from them.
    _parts: Vec<Descriptor>,
    // Last: the descriptors above go before the handle they were built on.
    handle: Rc<Handle>,
}

thread_local! {
    // cuDNN handles and plans are per thread, as the handles are.
    static HANDLES: RefCell<HashMap<DeviceId, Rc<Handle>>> = RefCell::new(HashMap::new());
    // A failed build is kept too, so that a refused rank is not asked again.
    static PLANS: RefCell<HashMap<PlanKey, std::result::Result<Rc<Plan>, String>>> =
        RefCell::new(HashMap::new());
}

// Creating the handle is FFI.
#[allow(unsafe_code)]
fn handle(device: &CudaDevice) -> Result<Rc<Handle>> {
    HANDLES.with(|handles| {
        if let Some(handle) = handles.borrow().get(&device.id()) {
            return Ok(handle.clone());
        }
        let stream = device.cuda_stream();
        stream
            .context()
            .bind_to_thread()
            .map_err(candle_core::Error::wrap)?;
        let handle = Handle(
            result::create_handle().map_err(candle_core::Error::wrap)?,
            stream.clone(),
        );
        // SAFETY: a live handle and the device's live stream.
        unsafe { result::set_stream(handle.0, stream.cu_stream() as sys::cudaStream_t) }
            .map_err(candle_core::Error::wrap)?;
        let handle = Rc::new(handle);
        handles.borrow_mut().insert(device.id(), handle.clone());
        Ok(handle)
    })
}

fn tensor_descriptor(
    id: i64,
    dims: [i32; 4],
    format: MemoryFormat,
    data_type: sys::cudnnDataType_t,
) -> Result<Descriptor> {
    let tensor = Descriptor::new(Kind::CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
    tensor.set_data_type(Attr::CUDNN_ATTR_TENSOR_DATA_TYPE, data_type)?;
    tensor.set_i64s(Attr::CUDNN_ATTR_TENSOR_DIMENSIONS, &dims.map(i64::from))?;
    tensor.set_i64s(
        Attr::CUDNN_ATTR_TENSOR_STRIDES,
        &format.strides(dims.map(i64::from)),
    )?;
    tensor.set_i64s(Attr::CUDNN_ATTR_TENSOR_UNIQUE_ID, &[id])?;
    tensor.set_i64s(Attr::CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, &[ALIGNMENT as i64])?;
    tensor.finalize("tensor")?;
    Ok(tensor)
}

/// The plan for `key`, built on first use on this thread.
fn plan(device: &CudaDevice, key: PlanKey, data_type: sys::cudnnDataType_t) -> Result<Rc<Plan>> {
    if let Some(built) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return built.map_err(candle_core::Error::Msg);
    }
    let handle = handle(device)?;
    // Building asks the driver about the device: its context must be current.
    handle
        .1
        .context()
        .bind_to_thread()
        .map_err(candle_core::Error::wrap)?;
    let built = build_plan(&handle, &key, data_type);
    match &built {
        Ok(plan) => tracing::debug!(
            ?key,
            engine = plan.engine,
            workspace = plan.workspace,
            "cuDNN graph plan"
        ),
        Err(error) => tracing::debug!(?key, %error, "no cuDNN graph plan"),
    }
    let built = built.map(Rc::new).map_err(|error| error.to_string());
    PLANS.with(|plans| plans.borrow_mut().insert(key, built.clone()));
    built.map_err(candle_core::Error::Msg)
}

fn build_plan(handle: &Rc<Handle>, key: &PlanKey, data_type: sys::cudnnDataType_t) -> Result<Plan> {
    let x = tensor_descriptor(X, key.x, key.format, data_type)?;
    let w = tensor_descriptor(W, key.w, key.format, data_type)?;
    let y = tensor_descriptor(Y, key.y, key.format, data_type)?;

    let conv = Descriptor::new(Kind::CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)?;
    // f16 and bf16 accumulate in f32, as PyTorch's do.
    conv.set_data_type(
        Attr::CUDNN_ATTR_CONVOLUTION_COMP_TYPE,
        sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    )?;
    conv.set_conv_mode(
        Attr::CUDNN_ATTR_CONVOLUTION_CONV_MODE,
        sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    conv.set_i64s(Attr::CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, &[2])?;
    let padding = key.padding as i64;
    conv.set_i64s(Attr::CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, &[padding; 2])?;
    conv.set_i64s(Attr::CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, &[padding; 2])?;
    conv.set_i64s(Attr::CUDNN_ATTR_CONVOLUTION_DILATIONS, &[1; 2])?;
    conv.set_i64s(
        Attr::CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
        &[key.stride as i64; 2],
    )?;
    conv.finalize("convolution")?;

    let op = Descriptor::new(Kind::CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
    op.set_descriptors(Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, &[&x])?;
    op.set_descriptors(Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, &[&w])?;
    op.set_descriptors(Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, &[&y])?;
    op.set_descriptors(
        Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
        &[&conv],
    )?;
    op.set_f32(Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, 1.0)?;
    op.set_f32(Attr::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, 0.0)?;
    op.finalize("convolution node")?;

    let graph = Descriptor::new(Kind::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
    graph.set_descriptors(Attr::CUDNN_ATTR_OPERATIONGRAPH_OPS, &[&op])?;
    graph.set_handle(Attr::CUDNN_ATTR_OPERATIONGRAPH_HANDLE, handle)?;
    graph.finalize("operation graph")?;

    let heuristic = Descriptor::new(Kind::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    heuristic.set_descriptors(Attr::CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, &[&graph])?;
    heuristic.set_heur_mode(
        Attr::CUDNN_ATTR_ENGINEHEUR_MODE,
        sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_A,
    )?;
    heuristic.finalize("heuristic")?;
    let offered = heuristic.count_descriptors(Attr::CUDNN_ATTR_ENGINEHEUR_RESULTS)?;
    let configs = (0..offered)
        .map(|_| Descriptor::new(Kind::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR))
        .collect::<Result<Vec<_>>>()?;
    let filled = heuristic.get_descriptors(Attr::CUDNN_ATTR_ENGINEHEUR_RESULTS, &configs)?;

    let mut usable = 0;
    for config in configs.iter().take(filled) {
        let engine = Descriptor::new(Kind::CUDNN_BACKEND_ENGINE_DESCRIPTOR)?;
        let engines = std::slice::from_ref(&engine);
        // An engine that cannot say what it is, or compiles at run time, is passed over.
        let found = config.get_descriptors(Attr::CUDNN_ATTR_ENGINECFG_ENGINE, engines);
        if found.ok() != Some(1) || engine.compiles_at_run_time().unwrap_or(true) {
            continue;
        }
        let plan = Descriptor::new(Kind::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
        plan.set_handle(Attr::CUDNN_ATTR_EXECUTION_PLAN_HANDLE, handle)?;
        plan.set_descriptors(Attr::CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[config])?;
        if plan.finalize("execution plan").is_err() {
            continue;
        }
        if usable < key.rank {
            usable += 1;
            continue;
        }
        let workspace = plan.get_i64(Attr::CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?;
        let engine_index = engine
            .get_i64(Attr::CUDNN_ATTR_ENGINE_GLOBAL_INDEX)
            .unwrap_or(-1);
        let mut parts = vec![x, w, y, conv, op, graph, heuristic, engine];
        parts.extend(configs);
        return Ok(Plan {
            plan,
            workspace: usize::try_from(workspace).unwrap_or(0),
            engine: engine_index,
            _parts: parts,
            handle: handle.clone(),
        });
    }
    candle_core::bail!(
        "cuDNN graph: the heuristic offers {usable} usable engines for this convolution, none of rank {}",
        key.rank
    )
}

/// `conv(x) + bias + residual`, the convolution by the `rank`-th engine of
/// cuDNN's heuristic, every tensor in `format`.
pub fn conv2d(x: &Tensor, args: ConvArgs, format: MemoryFormat, rank: usize) -> Result<Tensor> {
    let out = match x.dtype() {
        DType::F32 => conv_as::<f32>(x, &args, format, rank),
        DType::F16 => conv_as::<half::f16>(x, &args, format, rank),
        DType::BF16 => conv_as::<half::bf16>(x, &args, format, rank),
        other => candle_core::bail!("the cuDNN graph convolution does not take {other:?}"),
    }?;
    super::plus_bias_and_residual(out, args, format)
}

// The variant pack hands cuDNN raw device pointers.
#[allow(unsafe_code)]
fn conv_as<T>(x: &Tensor, args: &ConvArgs, format: MemoryFormat, rank: usize) -> Result<Tensor>
where
    T: CudaDType + CudnnDataType + DeviceRepr,
{
    let Dims {
        x: x_dims,
        w: w_dims,
        y: y_dims,
        out_shape,
    } = dims(x, args, format)?;
    let x = x.contiguous()?;
    let weight = args.weight.contiguous()?;
    let device = match x.device() {
        candle_core::Device::Cuda(device) => device.clone(),
        _ => candle_core::bail!("the cuDNN graph convolution runs on CUDA tensors only"),
    };
    let key = PlanKey {
        x: x_dims,
        w: w_dims,
        y: y_dims,
        padding: args.padding,
        stride: args.stride,
        format,
        dtype: x.dtype(),
        device: device.id(),
        rank,
    };
    let plan = plan(&device, key, T::DATA_TYPE)?;
    let out_len: usize = out_shape.iter().product();
    let stream = device.cuda_stream();
    let (x_storage, x_layout) = x.storage_and_layout();
    let (w_storage, w_layout) = weight.storage_and_layout();
    let (x_view, w_view) = (
        view::<T>(&x_storage, x_layout)?,
        view::<T>(&w_storage, w_layout)?,
    );
    // SAFETY: cuDNN writes all of y and uses the workspace as scratch.
    let (mut y, mut workspace) =
        unsafe { output_and_workspace::<T>(&device, out_len, plan.workspace)? };
    {
        // The guards order the stream after the operands' writers and
        // record the reads and writes: held until the launch is queued.
        let (x_ptr, _x_read) = x_view.device_ptr(&stream);
        let (w_ptr, _w_read) = w_view.device_ptr(&stream);
        let (y_ptr, _y_write) = y.device_ptr_mut(&stream);
        let (workspace_ptr, _workspace_write) = workspace.device_ptr_mut(&stream);
        if [x_ptr, w_ptr, y_ptr]
            .iter()
            .any(|&ptr| !(ptr as usize).is_multiple_of(ALIGNMENT))
        {
            candle_core::bail!(
                "the cuDNN graph convolution needs {ALIGNMENT}-byte aligned operands"
            );
        }
        let pack = Descriptor::new(Kind::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
        let pointers = [x_ptr, w_ptr, y_ptr].map(|ptr| ptr as *mut c_void);
        pack.set_i64s(Attr::CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, &[X, W, Y])?;
        // SAFETY: three device pointers (and below one), as
        // CUDNN_TYPE_VOID_PTR reads them, each to a buffer of the shape and
        // layout its tensor descriptor gave, live until the guards drop.
        unsafe {
            let ty = Type::CUDNN_TYPE_VOID_PTR;
            pack.set(
                Attr::CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                ty,
                3,
                pointers.as_ptr().cast(),
            )?;
            let workspace_ptr = workspace_ptr as *mut c_void;
            let name = Attr::CUDNN_ATTR_VARIANT_PACK_WORKSPACE;
            pack.set(name, ty, 1, (&raw const workspace_ptr).cast())?;
        }
        pack.finalize("variant pack")?;
        stream
            .context()
            .bind_to_thread()
            .map_err(candle_core::Error::wrap)?;
        // SAFETY: a finalized plan of this handle, whose stream is the
        // device's, and a pack of live buffers matching its descriptors.
        check(
            unsafe { sys::cudnnBackendExecute(plan.handle.0, plan.plan.0, pack.0) },
            "execute",
        )?;
    }
    Ok(tensor(y, device, out_shape))
}
