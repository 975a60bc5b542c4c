//! `@ambit/native`: Ambit's wasmtime filter engine as a Node-API addon.
//!
//! JavaScript hands over work and gets answers through one callback:
//! - `loadFilter` compiles (or loads from the disk cache), links and configures a
//!   filter on the compile thread;
//! - `run` executes one phase of a chain on one of the engine's call threads, the whole
//!   chain in native code;
//! - each finished job calls `onDone(job, resultJson)` on the JavaScript thread.
//! Nothing here blocks the event loop; a call that overruns its deadline is stopped
//! by wasmtime's epoch interruption, on the thread that runs it.

/// Every Rust allocation of the addon (not Node's own heap).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cache;
mod chain;
mod engine;
mod filter;
mod guest_build;
mod heads;
mod host;
mod limits;
mod loadgen;
mod ops;
mod peer_keys;
mod validate;
mod proxy;
mod shared;
mod wire;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "filter",
        imports: { default: trappable },
        // The heads and the context are lent to the guest for one phase; the host keeps
        // them in the phase's own state (`heads.rs`), so a handle is only a marker.
        with: {
            "ambit:filter/types.context": crate::heads::ContextHandle,
            "ambit:filter/types.request-head": crate::heads::RequestHandle,
            "ambit:filter/types.response-head": crate::heads::ResponseHandle,
        },
    });
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::json;

use crate::engine::{EngineOptions, Shared};
use crate::filter::{FilterModule, FilterSpec};
use crate::host::LoadCells;
use crate::wire::PhaseInput;

type Done = ThreadsafeFunction<FnArgs<(u32, String)>, (), FnArgs<(u32, String)>, Status, false, true>;

enum Job {
    Load { job: u32, handle: u32, wasm: Vec<u8>, spec: String },
    Run { job: u32, chain: Arc<Vec<Arc<FilterModule>>>, input: String, load: Option<Int32Array> },
    Stop,
}

struct Inner {
    shared: Arc<Shared>,
    filters: Mutex<HashMap<u32, Arc<FilterModule>>>,
    chains: Mutex<HashMap<u32, Arc<Vec<Arc<FilterModule>>>>>,
    done: Done,
}

impl Inner {
    fn answer(&self, job: u32, value: String) {
        self.done.call(FnArgs::from((job, value)), ThreadsafeFunctionCallMode::NonBlocking);
    }

    fn load(&self, job: u32, handle: u32, wasm: Vec<u8>, spec: String) {
        let out = match serde_json::from_str::<FilterSpec>(&spec) {
            Err(e) => json!({ "error": { "code": "AMBIT_ERR_FILTER_PACKAGE", "message": format!("bad filter spec: {e}") } }),
            Ok(spec) => {
                let label = format!("filter {}", spec.name);
                match self.shared.prepare(&label, &wasm) {
                    Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
                    Ok((pre, sha, cache)) => match FilterModule::new(self.shared.clone(), pre, FilterSpec { sha256: sha.clone(), ..spec }, cache.describe()) {
                        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
                        Ok(module) => {
                            let p = &module.phases;
                            let phases: Vec<&str> = [(p.connection, "connection"), (p.request_headers, "requestHeaders"), (p.response_headers, "responseHeaders")]
                                .into_iter()
                                .filter_map(|(on, name)| on.then_some(name))
                                .collect();
                            let answer = json!({ "ok": { "phases": phases, "sha256": sha, "cache": &module.cache } });
                            self.filters.lock().unwrap().insert(handle, module);
                            answer
                        }
                    },
                }
            }
        };
        self.answer(job, out.to_string());
    }

    fn run(&self, job: u32, chain: &[Arc<FilterModule>], input: &str, load: Option<&Int32Array>) {
        // The typed array stays referenced by the job until this returns.
        let cells = load.filter(|a| a.len() >= 2).map(|a| LoadCells(a.as_ptr() as *const AtomicI32));
        let out = match serde_json::from_str::<PhaseInput>(input) {
            Err(e) => json!({ "error": { "code": "AMBIT_ERR_ENGINE", "message": format!("bad phase input: {e}") } }).to_string(),
            Ok(input) => serde_json::to_string(&chain::run_phase(chain, input, cells))
                .unwrap_or_else(|e| json!({ "error": { "code": "AMBIT_ERR_ENGINE", "message": e.to_string() } }).to_string()),
        };
        self.answer(job, out);
    }
}

fn work(inner: Arc<Inner>, jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Load { job, handle, wasm, spec } => inner.load(job, handle, wasm, spec),
            Job::Run { job, chain, input, load } => inner.run(job, &chain, &input, load.as_ref()),
            Job::Stop => break,
        }
    }
}

/// The wasmtime engine of one node proxy process.
#[napi]
pub struct NativeEngine {
    /// Dropped at `close`: the engine and its pool are freed once the threads finish the jobs queued before it.
    inner: Option<Arc<Inner>>,
    threads: usize,
    calls: Sender<Job>,
    compiles: Sender<Job>,
}

#[napi]
impl NativeEngine {
    /// `options`: JSON of the engine options (threads, epochTickMs, maxInstances,
    /// maxMemoryPages, tableElements, maxIdlePerFilter, keepResidentBytes, cacheDir). `onDone(job, json)`
    /// receives every result.
    #[napi(constructor)]
    pub fn new(options: String, on_done: Function<FnArgs<(u32, String)>, ()>) -> Result<Self> {
        let options: EngineOptions = serde_json::from_str(&options).map_err(|e| Error::from_reason(format!("AMBIT_ERR_ENGINE: bad engine options: {e}")))?;
        let max_queue = options.max_queue.unwrap_or(limits::DEFAULT_MAX_QUEUE).max(1);
        let shared = Shared::new(options).map_err(|e| Error::from_reason(format!("AMBIT_ERR_ENGINE: wasmtime engine could not start: {e}")))?;
        let done: Done = on_done.build_threadsafe_function().callee_handled::<false>().weak::<true>().build()?;
        let inner = Arc::new(Inner { shared: shared.clone(), filters: Mutex::new(HashMap::new()), chains: Mutex::new(HashMap::new()), done });
        // Bounded: past max_queue waiting phases, run() refuses (the caller fails them closed).
        let (calls, call_rx) = bounded(max_queue);
        for i in 0..shared.threads {
            let (inner, rx) = (inner.clone(), call_rx.clone());
            thread::Builder::new().name(format!("ambit-filter-{i}")).spawn(move || work(inner, rx))?;
        }
        let (compiles, compile_rx) = unbounded();
        let c = inner.clone();
        thread::Builder::new().name("ambit-compile".into()).spawn(move || work(c, compile_rx))?;
        Ok(NativeEngine { inner: Some(inner), threads: shared.threads, calls, compiles })
    }

    /// Compiles, links and configures a filter under `handle`; answers `{ ok: { phases, sha256, cache } }`
    /// or `{ error: { code, message } }`.
    #[napi]
    pub fn load_filter(&self, job: u32, handle: u32, wasm: Buffer, spec: String) -> Result<()> {
        self.inner()?;
        let _ = self.compiles.send(Job::Load { job, handle, wasm: wasm.to_vec(), spec });
        Ok(())
    }

    #[napi]
    pub fn unload_filter(&self, handle: u32) {
        let Some(inner) = &self.inner else { return };
        let mut filters = inner.filters.lock().unwrap();
        if let Some(gone) = filters.remove(&handle) {
            if !filters.values().any(|f| f.sha256 == gone.sha256) {
                inner.shared.forget(&gone.sha256);
            }
        }
    }

    /// Defines chain `id` as these loaded filters, in order.
    #[napi]
    pub fn define_chain(&self, id: u32, handles: Vec<u32>) -> Result<()> {
        let inner = self.inner()?;
        let filters = inner.filters.lock().unwrap();
        let mut members = Vec::with_capacity(handles.len());
        for h in handles {
            members.push(filters.get(&h).cloned().ok_or_else(|| Error::from_reason(format!("AMBIT_ERR_ENGINE: filter handle {h} is not loaded")))?);
        }
        inner.chains.lock().unwrap().insert(id, Arc::new(members));
        Ok(())
    }

    #[napi]
    pub fn drop_chain(&self, id: u32) {
        if let Some(inner) = &self.inner {
            inner.chains.lock().unwrap().remove(&id);
        }
    }

    /// Runs one phase (JSON of a `PhaseInput`) over chain `chain`; answers a phase outcome.
    /// `load`: the destination's live load counters (an Int32Array over shared memory:
    /// `[0]` requests in flight, `[1]` retrying), read by `upstream-load` and counted into
    /// when a first attempt decides to retry.
    #[napi]
    pub fn run(&self, job: u32, chain: u32, input: String, load: Option<Int32Array>) -> Result<()> {
        let chain = self.chain(chain)?;
        match self.calls.try_send(Job::Run { job, chain, input, load }) {
            Err(TrySendError::Full(_)) => Err(Error::from_reason(format!("AMBIT_ERR_ENGINE_QUEUE_FULL: the filter queue is full ({} phases waiting)", self.calls.capacity().unwrap_or(0)))),
            _ => Ok(()),
        }
    }

    /// Benchmark hook, run on the calling thread: times `count` fresh instantiations and
    /// configures of a loaded filter and the memory each live instance adds, as JSON
    /// `{ instantiateUs, configureUs, instantiateCpuUs, configureCpuUs, rssPerInstanceBytes }`.
    #[napi]
    pub fn probe_instances(&self, handle: u32, count: u32) -> Result<String> {
        let filter = self.inner()?.filters.lock().unwrap().get(&handle).cloned().ok_or_else(|| Error::from_reason(format!("AMBIT_ERR_ENGINE: filter handle {handle} is not loaded")))?;
        let p = filter.probe(count as usize);
        Ok(json!({
            "instantiateUs": p.instantiate_us, "configureUs": p.configure_us,
            "instantiateCpuUs": p.instantiate_cpu_us, "configureCpuUs": p.configure_cpu_us,
            "rssPerInstanceBytes": p.rss_per_instance_bytes,
            "privatePerInstanceBytes": p.private_per_instance_bytes,
        }).to_string())
    }

    /// Benchmark hook, run on the calling thread: parses `input` (JSON of a `PhaseInput`)
    /// once, then runs that phase over chain `chain` `iterations` times, each on a fresh
    /// copy of the input, as `run` does but without the crossing. Answers JSON
    /// `{ iterations, phaseUs, phaseCpuUs, serializeUs, outcome }` (each `{ p50, p99, mean }`):
    /// the phase alone in wall and thread CPU time, writing its outcome as JSON, and the
    /// last outcome (to check what was measured did what it should).
    #[napi]
    pub fn bench_phase(&self, chain: u32, input: String, iterations: u32) -> Result<String> {
        let chain = self.chain(chain)?;
        let input: PhaseInput = serde_json::from_str(&input).map_err(|e| Error::from_reason(format!("AMBIT_ERR_ENGINE: bad phase input: {e}")))?;
        let n = iterations.max(1) as usize;
        let (mut phase_us, mut serialize_us, mut cpu_us) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        // Reading the thread's CPU clock is a system call (~1 µs in a VM): the wall-clock
        // window is taken inside the CPU one, so it holds none of it, and the CPU samples
        // are net of what an empty window reads.
        let empty_cpu = filter::empty_cpu_window();
        let mut last = String::new();
        for _ in 0..n {
            let copy = input.clone();
            let c0 = filter::thread_cpu_us();
            let t0 = Instant::now();
            // The heads come back as the data path takes them back (moved, not dropped), so
            // freeing them is outside the window, as it is outside a request's phase.
            let (outcome, heads) = chain::run_phase_with_heads(&chain, copy, None);
            let t1 = Instant::now();
            let c1 = filter::thread_cpu_us();
            drop(heads);
            cpu_us.push((c1 - c0 - empty_cpu).max(0.0));
            last = serde_json::to_string(&outcome).map_err(|e| Error::from_reason(format!("AMBIT_ERR_ENGINE: {e}")))?;
            let t2 = Instant::now();
            phase_us.push((t1 - t0).as_secs_f64() * 1e6);
            serialize_us.push((t2 - t1).as_secs_f64() * 1e6);
        }
        let outcome: serde_json::Value = serde_json::from_str(&last).unwrap_or(serde_json::Value::Null);
        Ok(json!({ "iterations": n, "phaseUs": summary(phase_us), "phaseCpuUs": summary(cpu_us), "serializeUs": summary(serialize_us), "outcome": outcome }).to_string())
    }

    /// Engine facts and per-filter instance counts, as JSON.
    #[napi]
    pub fn info(&self) -> String {
        let Some(inner) = &self.inner else { return json!({ "closed": true }).to_string() };
        let s = &inner.shared;
        let filters: serde_json::Map<String, serde_json::Value> = inner
            .filters
            .lock()
            .unwrap()
            .iter()
            .map(|(h, f)| {
                (h.to_string(), json!({ "name": &*f.name, "instantiations": f.instantiations.load(Ordering::Relaxed), "idle": f.idle_instances(), "cache": &f.cache }))
            })
            .collect();
        json!({
            "wasmtime": cache::WASMTIME_VERSION,
            "threads": s.threads,
            "epochTickMs": s.tick.as_secs_f64() * 1000.0,
            "maxInstances": s.max_instances,
            "maxMemoryPages": s.max_memory_bytes / 65536,
            "keepResidentBytes": s.keep_resident_bytes,
            "cacheDir": s.cache_dir.as_ref().map(|d| d.display().to_string()),
            "sharedTables": s.shared_table_paths(),
            "filters": filters,
        })
        .to_string()
    }

    /// Stops the engine's threads once queued jobs are done.
    #[napi]
    pub fn close(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        for _ in 0..self.threads {
            let _ = self.calls.send(Job::Stop);
        }
        let _ = self.compiles.send(Job::Stop);
        inner.shared.stop();
        // Loaded filters and chains hold the engine: let them go with the last job.
        inner.chains.lock().unwrap().clear();
        inner.filters.lock().unwrap().clear();
    }

    fn chain(&self, id: u32) -> Result<Arc<Vec<Arc<FilterModule>>>> {
        self.inner()?.chains.lock().unwrap().get(&id).cloned().ok_or_else(|| Error::from_reason(format!("AMBIT_ERR_ENGINE: chain {id} is not defined")))
    }

    /// The filters of chain `id`, for the data path (`proxy::NativeProxy::set_state`).
    pub(crate) fn chain_for_proxy(&self, id: u32) -> Option<Arc<Vec<Arc<FilterModule>>>> {
        self.inner.as_ref()?.chains.lock().unwrap().get(&id).cloned()
    }

    fn inner(&self) -> Result<&Arc<Inner>> {
        self.inner.as_ref().ok_or_else(|| Error::from_reason("AMBIT_ERR_ENGINE_CLOSED: the wasmtime engine is shut down"))
    }
}

/// p50, p99 and mean of samples (µs), for the benchmark hooks.
fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples.get(((samples.len() - 1) as f64 * q).round() as usize).copied().unwrap_or(0.0);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    json!({ "p50": at(0.5), "p99": at(0.99), "mean": mean })
}

/// The wasmtime release the addon was built with.
#[napi]
pub fn wasmtime_version() -> String {
    cache::WASMTIME_VERSION.to_string()
}

/// Builds a JavaScript filter component: the engine module (`sdk/engine/quickjs.wasm`)
/// pre-initialized with the filter's bundle (`source`, named `file` in stack traces),
/// wrapped as a component of `world` from the WIT in `witDir`. Throws
/// `AMBIT_ERR_BUILD: …` saying what failed (the bundle's own exception included).
#[napi]
pub fn build_guest(engine: Buffer, source: String, file: String, wit_dir: String, world: String) -> Result<Buffer> {
    guest_build::build(&engine, &source, &file, &wit_dir, &world)
        .map(Buffer::from)
        .map_err(|m| Error::from_reason(format!("AMBIT_ERR_BUILD: {m}")))
}
