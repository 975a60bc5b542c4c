//! The wasmtime engine shared by every filter of a node: configuration (component
//! model, epoch interruption, pooling allocator), the host linker, the epoch clock,
//! and loading a component into a linked `FilterPre`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{Filter, FilterPre};
use crate::cache::{self, CacheOutcome};
use crate::filter::LoadError;
use crate::host::State;
use crate::shared::SharedTable;

const HANDLER: &str = "ambit:filter/handler";
/// The minor version of the `ambit:filter` world this host runs (`sdk/wit/filter.wit`);
/// any patch version of it is accepted.
const WORLD: &str = "0.2";
/// The SDK a filter of another world is rebuilt with.
const REBUILD_WITH: &str = "@ambit/filter-sdk 0.2 (npx ambit-filter build)";
const HOST_PREFIX: &str = "ambit:filter/";
/// Compiled components kept after their last filter is unloaded.
const KEEP_UNUSED: usize = 8;

/// Engine options from JavaScript; every field has a documented default.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct EngineOptions {
    /// Threads running filter calls. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Epoch tick: a call is stopped at most one tick after its deadline. Default 1 ms.
    pub epoch_tick_ms: Option<f64>,
    /// Component instances the pooling allocator holds slots for. Default 1000.
    pub max_instances: Option<u32>,
    /// Largest linear memory any binding may cap at, in 64 KiB pages (address space
    /// reserved per slot). Default 16384 (1 GiB).
    pub max_memory_pages: Option<u32>,
    /// Table elements per table. Default 100000.
    pub table_elements: Option<usize>,
    /// Warm instances kept per pooled filter. Default: `threads`.
    pub max_idle_per_filter: Option<usize>,
    /// Where precompiled components are cached; none: no disk cache.
    pub cache_dir: Option<String>,
    /// Bytes of each instance's linear memory kept resident when its slot is freed: the
    /// pages the instance wrote are reset in place (only those, where the kernel can scan
    /// them) instead of being unmapped, so the next instance in the slot (a per-request
    /// call) takes no page faults on them. Default 1 MiB; 0 unmaps everything.
    pub keep_resident_bytes: Option<usize>,
    /// Phases waiting for a filter thread before `run` refuses new ones. Default 10000.
    pub max_queue: Option<usize>,
}

/// What every filter of the engine shares.
pub struct Shared {
    pub engine: Engine,
    pub linker: Linker<State>,
    pub origin: Instant,
    pub tick: Duration,
    pub threads: usize,
    pub max_instances: u32,
    pub max_memory_bytes: usize,
    pub table_elements: usize,
    /// Bytes of linear memory kept resident per freed slot (0 where the kernel cannot scan dirty pages).
    pub keep_resident_bytes: usize,
    pub max_idle_per_filter: usize,
    pub cache_dir: Option<PathBuf>,
    /// Linked components by sha256: bindings of the same filter compile it once.
    linked: Mutex<HashMap<String, FilterPre<State>>>,
    /// Linked components no filter uses, oldest first; kept a while for a reload that brings them back.
    unused: Mutex<VecDeque<String>>,
    /// Shared storage tables by (shared directory, scope), kept for the engine's life (across reloads).
    shared_tables: Mutex<HashMap<(String, String), Arc<SharedTable>>>,
    stop: AtomicBool,
}

impl Shared {
    pub fn new(options: EngineOptions) -> wasmtime::Result<Arc<Self>> {
        let threads = options.threads.unwrap_or_else(|| thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(1);
        let tick_ms = options.epoch_tick_ms.unwrap_or(1.0).clamp(0.1, 1000.0);
        let max_instances = options.max_instances.unwrap_or(1000).max(1);
        let max_memory_pages = options.max_memory_pages.unwrap_or(16384).clamp(1, 65536);
        let max_memory_bytes = max_memory_pages as usize * 65536;
        let table_elements = options.table_elements.unwrap_or(100_000);
        let keep_resident = options.keep_resident_bytes.unwrap_or(1 << 20);

        let pool = |keep_resident: usize| {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(max_instances)
                // A QuickJS or StarlingMonkey filter is a handful of core instances and tables, and one memory.
                .total_core_instances(max_instances.saturating_mul(8))
                .total_memories(max_instances)
                .total_tables(max_instances.saturating_mul(4))
                .max_core_instances_per_component(64)
                .max_memories_per_component(4)
                .max_tables_per_component(16)
                .max_memory_size(max_memory_bytes)
                .table_elements(table_elements);
            if keep_resident > 0 {
                // Only the pages an instance wrote are reset (PAGEMAP_SCAN, Linux 6.7+).
                pool.linear_memory_keep_resident(keep_resident)
                    .table_keep_resident(keep_resident.min(64 << 10))
                    .pagemap_scan(Enabled::Yes);
            }
            pool
        };
        let config = |pool: PoolingAllocationConfig| {
            let mut config = Config::new();
            config
                .wasm_component_model(true)
                .epoch_interruption(true)
                .parallel_compilation(true)
                .memory_init_cow(true)
                // A trap's message comes from the filter (`report-error`) and the trap code;
                // no wasm backtrace is captured, which keeps traps cheap.
                .wasm_backtrace_max_frames(None)
                // 4 GiB of address space per memory slot (plus a guard region) lets Cranelift
                // drop bounds checks on 32-bit memories: ~30% faster filter code than a 1 GiB
                // reservation here. One memory slot per instance keeps a 1000-slot pool at ~4 TiB
                // of address space, released when the engine closes.
                .memory_reservation(4 << 30)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            // For profiling filters with `perf`: names the compiled functions in /tmp/perf-<pid>.map.
            if std::env::var_os("AMBIT_WASM_PERFMAP").is_some() {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            config
        };
        // Keeping memory resident pays only where the kernel says which pages an instance
        // wrote; elsewhere every reset would rewrite the whole kept region: then nothing is kept.
        let (engine, keep_resident_bytes) = match Engine::new(&config(pool(keep_resident))) {
            Ok(engine) => (engine, keep_resident),
            Err(_) if keep_resident > 0 => (Engine::new(&config(pool(0)))?, 0),
            Err(e) => return Err(e),
        };

        let mut linker: Linker<State> = Linker::new(&engine);
        Filter::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;

        let cache_dir = options.cache_dir.map(|d| cache::engine_dir(&PathBuf::from(d), &engine));
        let shared = Arc::new(Shared {
            engine,
            linker,
            origin: Instant::now(),
            tick: Duration::from_secs_f64(tick_ms / 1000.0),
            threads,
            max_instances,
            max_memory_bytes,
            table_elements,
            keep_resident_bytes,
            max_idle_per_filter: options.max_idle_per_filter.unwrap_or(threads).max(1),
            cache_dir,
            linked: Mutex::new(HashMap::new()),
            unused: Mutex::new(VecDeque::new()),
            shared_tables: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let ticker = shared.clone();
        thread::Builder::new().name("ambit-epoch".into()).spawn(move || {
            while !ticker.stop.load(Ordering::Relaxed) {
                thread::sleep(ticker.tick);
                ticker.engine.increment_epoch();
            }
        })?;
        Ok(shared)
    }

    /// Epoch ticks for a deadline: the call traps between `deadline_ms` and one tick later.
    pub fn ticks_for(&self, deadline_ms: f64) -> u64 {
        let tick_ms = self.tick.as_secs_f64() * 1000.0;
        (deadline_ms / tick_ms).ceil() as u64 + 1
    }

    /// The shared table of a scope in the node's shared directory, opened (and its file
    /// created) on first use.
    pub fn shared_table(&self, dir: &str, scope: &str, max_keys: u32) -> Result<Arc<SharedTable>, String> {
        let mut tables = self.shared_tables.lock().unwrap();
        let key = (dir.to_string(), scope.to_string());
        if let Some(t) = tables.get(&key) {
            return Ok(t.clone());
        }
        let table = Arc::new(SharedTable::open(dir, scope, max_keys)?);
        tables.insert(key, table.clone());
        Ok(table)
    }

    /// The open shared tables: scope → file.
    pub fn shared_table_paths(&self) -> std::collections::BTreeMap<String, String> {
        self.shared_tables.lock().unwrap().iter().map(|((_, scope), t)| (scope.clone(), t.path())).collect()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Compiles (or loads from the cache) a filter component, checks it is of the
    /// `ambit:filter` world and links it against the host.
    pub fn prepare(&self, label: &str, wasm: &[u8]) -> Result<(FilterPre<State>, String, CacheOutcome), LoadError> {
        let sha256 = cache::sha256_hex(wasm);
        if let Some(pre) = self.linked.lock().unwrap().get(&sha256) {
            self.unused.lock().unwrap().retain(|s| s != &sha256);
            return Ok((pre.clone(), sha256, CacheOutcome::Loaded));
        }
        let (component, outcome) = cache::load_or_compile(&self.engine, self.cache_dir.as_deref(), wasm, &sha256)
            .map_err(|e| LoadError { code: "AMBIT_ERR_NOT_COMPONENT", message: format!("{label} could not be read as a component: {e}") })?;
        self.check_world(label, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(FilterPre::new)
            .map_err(|e| LoadError {
                code: "AMBIT_ERR_WRONG_WORLD",
                message: format!("{label} does not match the host's ambit:filter world: {e}; rebuild it with this SDK's `ambit-filter build`"),
            })?;
        self.linked.lock().unwrap().insert(sha256.clone(), pre.clone());
        Ok((pre, sha256, outcome))
    }

    /// Notes that no loaded filter uses a linked component any more. The last
    /// `KEEP_UNUSED` such components stay compiled; older ones are dropped.
    pub fn forget(&self, sha256: &str) {
        let mut unused = self.unused.lock().unwrap();
        if !unused.iter().any(|s| s == sha256) {
            unused.push_back(sha256.to_string());
        }
        while unused.len() > KEEP_UNUSED {
            if let Some(old) = unused.pop_front() {
                self.linked.lock().unwrap().remove(&old);
            }
        }
    }

    fn check_world(&self, label: &str, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        match world_of(&exports) {
            World::Current => {}
            World::Other { series, export } => {
                let runs = format!("this host runs ambit:filter@{WORLD}.x filters");
                let message = if older_series(&series, WORLD) {
                    format!("{label} was built for ambit:filter@{series}.x (it exports {export}); {runs}: rebuild it with {REBUILD_WITH}")
                } else {
                    format!(
                        "{label} was built for ambit:filter@{series}.x (it exports {export}), newer than this host's world; {runs}: upgrade the node proxy, or rebuild the filter with {REBUILD_WITH}"
                    )
                };
                return Err(LoadError { code: "AMBIT_ERR_WRONG_WORLD", message });
            }
            World::Foreign => {
                let list = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
                return Err(LoadError {
                    code: "AMBIT_ERR_WRONG_WORLD",
                    message: format!(
                        "{label} is a component of another world: it exports [{list}] but not {HANDLER}@{WORLD}.x; build it against the ambit:filter world with `ambit-filter build`"
                    ),
                });
            }
        }
        let foreign: Vec<String> = ty
            .imports(&self.engine)
            .filter(|(name, _)| !name.starts_with(HOST_PREFIX))
            .map(|(name, _)| name.to_string())
            .collect();
        if !foreign.is_empty() {
            return Err(LoadError {
                code: "AMBIT_ERR_WRONG_WORLD",
                message: format!(
                    "{label} imports [{}], which the ambit:filter world does not provide; filters may import only ambit:filter/host and ambit:filter/types (build with `ambit-filter build`)",
                    foreign.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// Which `ambit:filter` world a component's exports belong to.
#[derive(Debug, PartialEq, Eq)]
enum World {
    /// `ambit:filter@0.2.x`.
    Current,
    /// Another version of `ambit:filter`: its `major.minor`, and the handler export that says so.
    Other { series: String, export: String },
    /// Not an `ambit:filter` component.
    Foreign,
}

fn world_of(exports: &[String]) -> World {
    let mut other = None;
    for name in exports {
        let Some(rest) = name.strip_prefix(HANDLER) else { continue };
        match rest.strip_prefix('@') {
            Some(version) if version.strip_prefix(WORLD).is_some_and(|patch| patch.starts_with('.')) => return World::Current,
            Some(version) => {
                let series = version.split('.').take(2).collect::<Vec<_>>().join(".");
                other = Some(World::Other { series, export: name.clone() });
            }
            // The first releases were unversioned.
            None if rest.is_empty() => other = Some(World::Other { series: "0.1".into(), export: name.clone() }),
            None => {}
        }
    }
    other.unwrap_or(World::Foreign)
}

/// Whether `a` (`major.minor`) comes before `b`.
fn older_series(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> (u64, u64) {
        let mut it = s.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn other(series: &str, export: &str) -> World {
        World::Other { series: series.into(), export: export.into() }
    }

    #[test]
    fn the_world_is_told_by_the_handler_export() {
        assert_eq!(world_of(&names(&["ambit:filter/handler@0.2.0"])), World::Current);
        assert_eq!(world_of(&names(&["ambit:filter/handler@0.2.7"])), World::Current);
        assert_eq!(world_of(&names(&["ambit:filter/handler@0.1.3"])), other("0.1", "ambit:filter/handler@0.1.3"));
        assert_eq!(world_of(&names(&["ambit:filter/handler"])), other("0.1", "ambit:filter/handler"));
        assert_eq!(world_of(&names(&["ambit:filter/handler@0.20.0"])), other("0.20", "ambit:filter/handler@0.20.0"));
        assert_eq!(world_of(&names(&["ambit:filter/handler@1.0.0"])), other("1.0", "ambit:filter/handler@1.0.0"));
        assert_eq!(world_of(&names(&["greet"])), World::Foreign);
        assert_eq!(world_of(&names(&["ambit:filter/handlers@0.2.0"])), World::Foreign);
        assert_eq!(world_of(&[]), World::Foreign);
    }

    #[test]
    fn series_order() {
        assert!(older_series("0.1", "0.2"));
        assert!(!older_series("0.2", "0.2"));
        assert!(!older_series("0.20", "0.2"));
        assert!(!older_series("1.0", "0.2"));
    }
}
