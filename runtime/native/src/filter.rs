//! One loaded filter: its compiled component linked against the host (`FilterPre`),
//! its binding settings, and its instances.
//!
//! Instance strategies:
//! - `pooled`: configured instances are kept warm and reused; an instance that traps
//!   or overruns its deadline is dropped and a fresh one takes its place.
//! - `per-request`: every call gets a fresh instance from the pooling allocator
//!   (copy-on-write memory image), configured, called once and dropped: nothing a
//!   call leaves in memory is seen by another request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use wasmtime::Store;
use wasmtime::Trap;

use crate::bindings::ambit::filter::types::{ConfigureResult, Phases};
use crate::bindings::{Filter, FilterPre};
use crate::engine::Shared;
use crate::host::{CallScope, Capabilities, Limits, State};
use crate::shared::SharedTable;
use crate::wire::{CallOutcome, FailurePolicy};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Pooled,
    PerRequest,
}

/// A binding's settings, as JavaScript sends them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    pub name: String,
    /// Set by the engine from the component's bytes.
    #[serde(default)]
    pub sha256: String,
    pub capabilities: Vec<String>,
    /// The binding's configuration as JSON text, already validated against the schema.
    pub config: String,
    pub memory_max_pages: u32,
    pub deadline_ms: f64,
    pub failure_policy: FailurePolicy,
    pub instances: Strategy,
    /// Which shared table (capability `shared`) the filter uses. Default: `name`.
    #[serde(default)]
    pub shared_scope: Option<String>,
    /// The node's shared directory, where that table's file is. Required with `shared`.
    #[serde(default)]
    pub shared_dir: Option<String>,
    /// How many keys that table holds (the binding's `maxKeys`). Default 4096.
    #[serde(default)]
    pub shared_keys: Option<u32>,
}

/// Why a call produced no action.
pub struct CallFailure {
    pub kind: CallOutcome,
    pub message: String,
}

struct Warm {
    store: Store<State>,
    filter: Filter,
}

pub struct PhaseSet {
    pub connection: bool,
    pub request_headers: bool,
    pub response_headers: bool,
}

pub struct FilterModule {
    pub name: Arc<str>,
    pub sha256: String,
    pub policy: FailurePolicy,
    pub strategy: Strategy,
    pub deadline_ms: f64,
    pub phases: PhaseSet,
    caps: Capabilities,
    limits: Limits,
    config: String,
    shared_table: Option<Arc<SharedTable>>,
    pre: FilterPre<State>,
    shared: Arc<Shared>,
    idle: Mutex<Vec<Warm>>,
    pub instantiations: AtomicU64,
    /// What the precompiled cache did when this filter was loaded.
    pub cache: String,
}

/// What a failed load reports: an error code the JavaScript side knows, and a message.
pub struct LoadError {
    pub code: &'static str,
    pub message: String,
}

impl LoadError {
    fn new(code: &'static str, message: String) -> Self {
        LoadError { code, message }
    }
}

impl FilterModule {
    /// Links `pre`, then creates and configures a first instance: that checks the
    /// memory cap against the component's initial memory and the filter's verdict on
    /// its configuration, and learns which phases it implements.
    pub fn new(shared: Arc<Shared>, pre: FilterPre<State>, spec: FilterSpec, cache: String) -> Result<Arc<Self>, LoadError> {
        let caps = Capabilities::parse(&spec.capabilities).map_err(|m| LoadError::new("AMBIT_ERR_FILTER_PACKAGE", format!("filter {}: {m}", spec.name)))?;
        if spec.memory_max_pages < 1 || spec.memory_max_pages > 65536 {
            return Err(LoadError::new(
                "AMBIT_ERR_MEMORY_CAP",
                format!("memory cap must be 1..65536 pages (64 KiB each), got {}", spec.memory_max_pages),
            ));
        }
        let memory_bytes = spec.memory_max_pages as usize * 65536;
        if memory_bytes > shared.max_memory_bytes {
            return Err(LoadError::new(
                "AMBIT_ERR_MEMORY_CAP",
                format!(
                    "filter {}: memory cap of {} pages is above the engine's largest memory ({} pages); raise the engine's maxMemoryPages or lower the binding's cap",
                    spec.name, spec.memory_max_pages, shared.max_memory_bytes / 65536
                ),
            ));
        }
        let limits = Limits { memory_bytes, table_elements: shared.table_elements, instances: 64, tables: 64, memories: 16 };
        let shared_table = match (caps.shared, spec.shared_dir.as_deref()) {
            (false, _) => None,
            (true, None) => {
                return Err(LoadError::new("AMBIT_ERR_SHARED_TABLE", format!("filter {} declares `shared` but no shared directory was given", spec.name)));
            }
            (true, Some(dir)) => Some(
                shared
                    .shared_table(dir, spec.shared_scope.as_deref().unwrap_or(&spec.name), spec.shared_keys.unwrap_or(crate::shared::DEFAULT_KEYS))
                    .map_err(|m| LoadError::new("AMBIT_ERR_SHARED_TABLE", format!("shared storage of filter {}: {m}", spec.name)))?,
            ),
        };
        let mut module = FilterModule {
            shared_table,
            name: Arc::from(spec.name.as_str()),
            sha256: spec.sha256,
            policy: spec.failure_policy,
            strategy: spec.instances,
            deadline_ms: spec.deadline_ms,
            phases: PhaseSet { connection: false, request_headers: false, response_headers: false },
            caps,
            limits,
            config: spec.config,
            pre,
            shared,
            idle: Mutex::new(Vec::new()),
            instantiations: AtomicU64::new(0),
            cache,
        };
        let first = module.instantiate().map_err(|f| match f {
            Instantiation::OverCap(pages) => LoadError::new(
                "AMBIT_ERR_MEMORY_CAP",
                format!(
                    "filter {}: the filter starts with {pages} pages ({} MiB) of memory, above the cap of {} pages; raise the binding's memory cap",
                    module.name,
                    pages as f64 / 16.0,
                    spec.memory_max_pages
                ),
            ),
            Instantiation::Failed(m) => LoadError::new("AMBIT_ERR_INSTANTIATE", format!("filter {}: instantiation failed: {m}", module.name)),
        })?;
        let (warm, phases) = module.configure(first, module.deadline_ms.max(1000.0)).map_err(|e| match e {
            Configure::Rejected(why) => LoadError::new("AMBIT_ERR_CONFIG_REJECTED", format!("filter {} rejected its config: {why}", module.name)),
            Configure::Failed(f) => LoadError::new("AMBIT_ERR_INSTANTIATE", format!("filter {}: configure failed ({:?}): {}", module.name, f.kind, f.message)),
        })?;
        module.phases = phases;
        if module.strategy == Strategy::Pooled {
            module.idle.get_mut().unwrap().push(warm);
        }
        Ok(Arc::new(module))
    }

    fn new_store(&self) -> Store<State> {
        let state = State::new(self.name.clone(), self.caps, self.limits, self.shared_table.clone(), self.shared.origin);
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        // Instantiation runs the component's start functions: bound them too.
        store.set_epoch_deadline(self.shared.ticks_for(self.deadline_ms.max(1000.0)));
        store
    }

    fn instantiate(&self) -> Result<Warm, Instantiation> {
        let mut store = self.new_store();
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        match self.pre.instantiate(&mut store) {
            Ok(filter) => Ok(Warm { store, filter }),
            Err(e) => match store.data().initial_memory_over_cap {
                Some(bytes) => Err(Instantiation::OverCap(bytes / 65536)),
                None => Err(Instantiation::Failed(error_text(&e))),
            },
        }
    }

    fn arm(&self, store: &mut Store<State>, deadline_ms: f64) {
        store.set_epoch_deadline(self.shared.ticks_for(deadline_ms));
    }

    fn configure(&self, mut warm: Warm, deadline_ms: f64) -> Result<(Warm, PhaseSet), Configure> {
        self.arm(&mut warm.store, deadline_ms);
        let handler = warm.filter.ambit_filter_handler();
        match handler.call_configure(&mut warm.store, &self.config) {
            Ok(ConfigureResult::Ok(info)) => {
                let p = info.phases;
                let phases = PhaseSet {
                    connection: p.contains(Phases::CONNECTION),
                    request_headers: p.contains(Phases::REQUEST_HEADERS),
                    response_headers: p.contains(Phases::RESPONSE_HEADERS),
                };
                Ok((warm, phases))
            }
            Ok(ConfigureResult::Invalid(why)) => Err(Configure::Rejected(why)),
            Err(e) => Err(Configure::Failed(classify(&e, warm.store.data_mut(), deadline_ms))),
        }
    }

    /// A configured instance for one call.
    fn acquire(&self) -> Result<Warm, CallFailure> {
        if self.strategy == Strategy::Pooled {
            if let Some(w) = self.idle.lock().unwrap().pop() {
                return Ok(w);
            }
        }
        let warm = self.instantiate().map_err(|f| CallFailure {
            kind: CallOutcome::Unavailable,
            message: match f {
                Instantiation::OverCap(p) => format!("no instance: initial memory of {p} pages is above the cap"),
                Instantiation::Failed(m) => format!("no instance could be created: {m}"),
            },
        })?;
        match self.configure(warm, self.deadline_ms) {
            Ok((w, _)) => Ok(w),
            Err(Configure::Rejected(why)) => Err(CallFailure { kind: CallOutcome::Trap, message: format!("rejected its config on a new instance: {why}") }),
            Err(Configure::Failed(f)) => Err(f),
        }
    }

    /// Runs `f` on an instance under the binding's deadline. Log lines and counter
    /// updates the call made are appended to `logs`/`counters` whatever the outcome.
    /// `scope` carries the phase, the attempt's facts and the chain's directives so far
    /// into the call and back.
    pub fn call<R>(
        &self,
        scope: &mut CallScope,
        logs: &mut Vec<(String, &'static str, String)>,
        counters: &mut Vec<(String, String, u32)>,
        f: impl FnOnce(&mut Store<State>, &Filter) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let mut warm = self.acquire()?;
        self.arm(&mut warm.store, self.deadline_ms);
        warm.store.data_mut().reported = None;
        std::mem::swap(&mut warm.store.data_mut().scope, scope);
        let result = f(&mut warm.store, &warm.filter);
        let data = warm.store.data_mut();
        std::mem::swap(&mut data.scope, scope);
        logs.append(&mut data.logs);
        counters.append(&mut data.counters);
        match result {
            Ok(r) => {
                if self.strategy == Strategy::Pooled {
                    let mut idle = self.idle.lock().unwrap();
                    if idle.len() < self.shared.max_idle_per_filter {
                        idle.push(warm);
                    }
                }
                Ok(r)
            }
            // A trapped instance cannot be entered again: it is dropped here.
            Err(e) => Err(classify(&e, warm.store.data_mut(), self.deadline_ms)),
        }
    }

    /// Measures, on the calling thread, `count` fresh instantiations and configures of
    /// this filter, and the resident memory each live instance adds. For benchmarks.
    pub fn probe(&self, count: usize) -> Probe {
        // Timing: instantiate, configure, drop — as a per-request call does, so a slot
        // freed by one instance is reused by the next.
        let mut instantiate_us = Vec::with_capacity(count);
        let mut configure_us = Vec::with_capacity(count);
        let mut instantiate_cpu_us = Vec::with_capacity(count);
        let mut configure_cpu_us = Vec::with_capacity(count);
        // The wall-clock windows are taken inside the CPU-clock reads (each a system call),
        // and the CPU samples are net of what an empty window reads.
        let empty_cpu = empty_cpu_window();
        for _ in 0..count {
            let c0 = thread_cpu_us();
            let t0 = Instant::now();
            let Ok(warm) = self.instantiate() else { break };
            instantiate_us.push(elapsed_ms(t0) * 1000.0);
            let c1 = thread_cpu_us();
            instantiate_cpu_us.push((c1 - c0 - empty_cpu).max(0.0));
            let t1 = Instant::now();
            let Ok(_) = self.configure(warm, self.deadline_ms.max(1000.0)) else { break };
            configure_us.push(elapsed_ms(t1) * 1000.0);
            configure_cpu_us.push((thread_cpu_us() - c1 - empty_cpu).max(0.0));
        }
        // Memory: configured instances held alive at once.
        let hold = count.clamp(1, 50);
        let rss_before = resident_bytes();
        let anon_before = anonymous_bytes();
        let mut live = Vec::with_capacity(hold);
        for _ in 0..hold {
            match self.instantiate().map(|w| self.configure(w, self.deadline_ms.max(1000.0))) {
                Ok(Ok((w, _))) => live.push(w),
                _ => break,
            }
        }
        let rss_after = resident_bytes();
        let anon_after = anonymous_bytes();
        let n = live.len().max(1) as f64;
        drop(live);
        Probe { instantiate_us, configure_us, instantiate_cpu_us, configure_cpu_us, rss_per_instance_bytes: (rss_after.saturating_sub(rss_before)) as f64 / n,
            private_per_instance_bytes: (anon_after.saturating_sub(anon_before)) as f64 / n,
        }
    }

    /// Instances kept warm right now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

pub struct Probe {
    pub instantiate_us: Vec<f64>,
    pub configure_us: Vec<f64>,
    /// The same, in CPU time of the measuring thread: what other processes on the machine do not inflate.
    pub instantiate_cpu_us: Vec<f64>,
    pub configure_cpu_us: Vec<f64>,
    /// Resident memory each held instance adds: every page it touched, including pages of
    /// the memory image it only read (shared with every other instance of the filter).
    pub rss_per_instance_bytes: f64,
    /// The part of it that is the instance's own (anonymous pages: written copy-on-write
    /// pages, stacks, heaps); what another instance costs the node.
    pub private_per_instance_bytes: f64,
}

/// What reading the thread's CPU clock twice in a row measures (median, µs): the cost of
/// the reads themselves, taken off the CPU samples of the benchmark hooks.
pub(crate) fn empty_cpu_window() -> f64 {
    let mut samples: Vec<f64> = (0..200).map(|_| -thread_cpu_us() + thread_cpu_us()).collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

pub(crate) fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Anonymous resident memory of the process (`RssAnon` in /proc/self/status), bytes.
fn anonymous_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("RssAnon:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn resident_bytes() -> u64 {
    // /proc/self/statm: size resident shared text lib data dt (in pages)
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

enum Instantiation {
    OverCap(usize),
    Failed(String),
}

enum Configure {
    Rejected(String),
    Failed(CallFailure),
}

/// What wasmtime says when a guest returns still holding a borrow it was lent.
const BORROW_KEPT: &str = "borrow handles still remain";

/// The cause of a failure, without wasmtime's context lines.
fn error_text(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

/// Tells a deadline from a trap, and names what the filter said before it trapped.
fn classify(e: &wasmtime::Error, state: &mut State, deadline_ms: f64) -> CallFailure {
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallFailure {
            kind: CallOutcome::Deadline,
            message: format!("did not return within its {deadline_ms} ms deadline and was stopped"),
        };
    }
    let mut text = error_text(e);
    if text.contains(BORROW_KEPT) {
        text = format!("the filter returned still holding a handle it was lent (the context or a head); a filter must drop lent handles before it returns ({text})");
    }
    let message = match state.reported.take() {
        Some(reported) => format!("{reported} ({text})"),
        None => text,
    };
    CallFailure { kind: CallOutcome::Trap, message }
}

/// Milliseconds since `origin`, for call durations.
pub fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
