//! A step of device work replayed as a CUDA graph: the UNet step is
//! hundreds of kernel launches, and at batch 1 candle's host side of each
//! (shape checks, an allocation, the launch) may cost as much as the kernel,
//! so the GPU idles between them. A graph launches them all in one call.
//!
//! For each shape, on each thread, the first call runs the step as usual
//! (which also warms everything a capture must not do: the convolutions' and attention's
//! trials, candle's uploads of kernel parameters, kept in its cache), then
//! captures it on inputs of its own, replays the capture on the call's
//! inputs, and keeps the graph only when its output matches the usual run
//! within [`TOLERANCE`] and replays faster (`choice`). Anything that fails
//! on the way (a capture candle or a library refuses) leaves the shape to
//! the usual run.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::backend::BackendDevice;
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{CudaGraph, sys};
use candle_core::{CudaDevice, Device, Result, Tensor};

use super::choice::{best_of_two, time_if_accurate};

/// A graph is kept for a shape only within this relative L2 distance of the
/// usual run on the same inputs: the same kernels in the same order give
/// the same output, and a replay reading stale inputs is off by far more.
pub const TOLERANCE: f64 = 1e-3;

/// At most this many shapes per thread get a graph: each keeps the memory
/// of a step's activations reserved while it lives, and a busy engine sees
/// a few sizes and batches, not dozens.
pub const MAX_GRAPHS: usize = 8;

/// A captured step, with the buffers it reads its inputs from and the
/// output it writes (a graph allocation, at the same address every replay).
struct Captured {
    graph: CudaGraph,
    inputs: Vec<Tensor>,
    /// Taken only by `drop`.
    output: Option<Tensor>,
    /// Whether the graph ever ran: until then its output's address is
    /// the graph's alone, and freeing it is an error.
    launched: Cell<bool>,
}

impl Captured {
    /// The step on `inputs`: copied into the graph's buffers, replayed, and
    /// the output copied out (the next replay overwrites it).
    fn replay(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let Some(output) = &self.output else {
            candle_core::bail!("a CUDA graph without its output");
        };
        for (buffer, input) in self.inputs.iter().zip(inputs) {
            buffer.slice_set(&input.contiguous()?, 0, 0)?;
        }
        self.graph.launch().w()?;
        self.launched.set(true);
        output.copy()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if let Some(output) = self.output.take()
            && !self.launched.get()
        {
            // Never allocated: its address is only reserved by the graph.
            std::mem::forget(output);
        }
    }
}

thread_local! {
    /// This thread's graphs, per [`Graphs`] (by its id): candle keeps some
    /// of the host data a capture uploads in a cache of the capturing
    /// thread, freed when that thread ends (the engine draws on tokio's
    /// blocking threads, which end when idle), so a graph is replayed only
    /// on the thread that captured it, and dropped with it.
    static CAPTURED: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Graphs of one step (the UNet's), per key and thread.
pub struct Graphs<K> {
    id: u64,
    key: PhantomData<fn(K)>,
}

impl<K> Default for Graphs<K> {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            key: PhantomData,
        }
    }
}

impl<K> Debug for Graphs<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graphs").field("id", &self.id).finish()
    }
}

impl<K: Eq + Hash + Clone + Debug + 'static> Graphs<K> {
    /// `step(inputs)`: replayed from the graph this thread kept for `key`,
    /// or run as usual. `step` must depend on nothing but `inputs` and state
    /// that is the same at every call with this `key` (the graph replays
    /// what it did at capture); `inputs` must be on one CUDA device.
    pub fn run(
        &self,
        key: &K,
        inputs: &[&Tensor],
        step: impl Fn(&[&Tensor]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let Some(Device::Cuda(device)) = inputs.first().map(|t| t.device()) else {
            return step(inputs);
        };
        CAPTURED.with(|captured| {
            let mut captured = captured.borrow_mut();
            let Some(graphs) = captured
                .entry(self.id)
                .or_insert_with(|| Box::new(HashMap::<K, Option<Captured>>::new()))
                .downcast_mut::<HashMap<K, Option<Captured>>>()
            else {
                return step(inputs);
            };
            match graphs.get(key) {
                Some(Some(graph)) => match graph.replay(inputs) {
                    Ok(output) => return Ok(output),
                    Err(error) => {
                        // Not tried again for this key: the usual run from now on.
                        tracing::warn!(?key, %error, "a CUDA graph's replay failed; dropped");
                        graphs.insert(key.clone(), None);
                        return step(inputs);
                    }
                },
                Some(None) => return step(inputs),
                None => {}
            }
            if graphs.values().flatten().count() >= MAX_GRAPHS {
                return step(inputs);
            }
            let _uploads_cached = device.enable_cuda_graph_htod_cache();
            let usual = step(inputs)?;
            let kept = match capture(device, inputs, &step) {
                Ok(graph) => keep_if_better(graph, inputs, &usual, &step),
                Err(error) => {
                    tracing::debug!(?key, %error, "no CUDA graph: the capture failed");
                    None
                }
            };
            tracing::debug!(?key, graph = kept.is_some(), "CUDA graph chosen");
            graphs.insert(key.clone(), kept);
            Ok(usual)
        })
    }
}

/// `step` captured on buffers shaped like `inputs`.
fn capture(
    device: &CudaDevice,
    inputs: &[&Tensor],
    step: &impl Fn(&[&Tensor]) -> Result<Tensor>,
) -> Result<Captured> {
    let stream = device.cuda_stream();
    if stream.context().is_managing_stream_synchronization() {
        // cudarc would wait, inside the capture, on events recorded outside.
        candle_core::bail!("the device has several streams");
    }
    let buffers = inputs
        .iter()
        .map(|t| t.zeros_like())
        .collect::<Result<Vec<_>>>()?;
    device.synchronize()?;
    // Relaxed: cuBLAS and cuDNN may allocate or query on first use.
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .w()?;
    let refs: Vec<&Tensor> = buffers.iter().collect();
    // A panic must not leave the stream capturing: caught, the capture
    // ended below, then resumed.
    let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&refs)));
    // cudarc keeps errors of its frees for the next call, which would then
    // return one before ending the capture: taken here, so that the
    // capture ends (and the stream runs work again) whatever happened.
    if let Err(error) = stream.context().check_err() {
        tracing::debug!(%error, "an error during the CUDA graph's capture");
    }
    // The output stays allocated after a launch, so each launch frees the
    // last one's first.
    let graph = stream
        .end_capture(sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH)
        .w();
    if let Err(error) = stream.context().check_err() {
        tracing::debug!(%error, "an error ending the CUDA graph's capture");
    }
    let output = match output {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match (output, graph) {
        (Ok(output), Ok(Some(graph))) => Ok(Captured {
            graph,
            inputs: buffers,
            output: Some(output),
            launched: Cell::new(false),
        }),
        (Ok(output), graph) => {
            // A graph address no graph will ever allocate.
            std::mem::forget(output);
            graph?;
            candle_core::bail!("the capture recorded nothing")
        }
        (Err(error), _) => Err(error),
    }
}

/// `captured` when its replay on `inputs` matches `usual` and is faster
/// than the usual run.
fn keep_if_better(
    captured: Captured,
    inputs: &[&Tensor],
    usual: &Tensor,
    step: &impl Fn(&[&Tensor]) -> Result<Tensor>,
) -> Option<Captured> {
    let device = usual.device();
    let reference = usual
        .to_dtype(candle_core::DType::F32)
        .inspect_err(|error| tracing::debug!(%error, "no CUDA graph: no reference"))
        .ok()?;
    let replay = || captured.replay(inputs);
    let replayed = time_if_accurate(&"CUDA graph", device, &reference, TOLERANCE, replay)?;
    let run = best_of_two(device, || step(inputs))
        .inspect_err(|error| tracing::debug!(%error, "no CUDA graph: the usual run failed"))
        .ok()?;
    tracing::debug!(?replayed, ?run, "CUDA graph timed");
    (replayed < run).then_some(captured)
}
