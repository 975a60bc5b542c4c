//! What a filter instance's store holds, and the `ambit:filter/host` imports,
//! implemented natively: clocks are answered here; log lines and counter updates are
//! buffered and handed to JavaScript with the phase's result, so a filter call never
//! waits on the event loop.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicI32, Ordering};

use wasmtime::ResourceLimiter;
use wasmtime::component::Resource;

use crate::bindings::ambit::filter::host::{self as wit_host, LogLevel, ServiceLoad, SharedEntry};
use crate::bindings::ambit::filter::types as wit_types;
use crate::heads::{ContextHandle, Heads, Refusal, RequestHandle, ResponseHandle, Side};
use crate::peer_keys::PeerKeys;
use crate::shared::SharedTable;
use crate::wire::Directives;

/// Longest log line or error report a filter may write; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// Capabilities a filter package declares (`"ambit": { "capabilities": [...] }`).
#[derive(Clone, Copy, Default, Debug)]
pub struct Capabilities {
    pub log: bool,
    pub counters: bool,
    pub clock: bool,
    pub random: bool,
    pub shared: bool,
    pub traffic: bool,
}

impl Capabilities {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut caps = Capabilities::default();
        for c in list {
            match c.as_str() {
                "log" => caps.log = true,
                "counters" => caps.counters = true,
                "clock" => caps.clock = true,
                "random" => caps.random = true,
                "shared" => caps.shared = true,
                "traffic" => caps.traffic = true,
                other => return Err(format!("unknown capability \"{other}\" (known: log, counters, clock, random, shared, traffic)")),
            }
        }
        Ok(caps)
    }
}

/// Per-instance limits beyond linear memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
}

/// Most a chain may hold a request with `delay-request` (ms).
pub const MAX_REQUEST_DELAY_MS: u32 = 60_000;

/// Which phase a call belongs to: request-phase host functions check it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Connection,
    RequestHeaders,
    ResponseHeaders,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Connection => "connection",
            Phase::RequestHeaders => "requestHeaders",
            Phase::ResponseHeaders => "responseHeaders",
        }
    }
}

/// A service's live load counters, in memory JavaScript shares with the engine
/// (`[0]` requests in flight, `[1]` of those retrying). Valid while the job that
/// carries them runs.
#[derive(Clone, Copy)]
pub struct LoadCells(pub *const AtomicI32);

// SAFETY: the cells live in a SharedArrayBuffer that the running job keeps referenced;
// they are only accessed atomically.
unsafe impl Send for LoadCells {}

impl LoadCells {
    pub fn get(&self, i: usize) -> &AtomicI32 {
        // SAFETY: the job's typed array has at least 2 elements (checked when it was taken).
        unsafe { &*self.0.add(i) }
    }
}

/// What a call knows about the traffic beyond its arguments, and what it asks of the host.
#[derive(Default)]
pub struct CallScope {
    pub phase: Option<Phase>,
    pub upstream_error: Option<String>,
    /// Live counters, read when present...
    pub load_cells: Option<LoadCells>,
    /// ...else this snapshot.
    pub load: (u32, u32),
    pub directives: Directives,
    /// The context and heads lent to the filters of the phase.
    pub heads: Heads,
}

/// The data of one filter instance's store.
pub struct State {
    pub filter: Arc<str>,
    caps: Capabilities,
    limits: Limits,
    /// Set when the instance's own initial memory is above the cap (instantiation then fails).
    pub initial_memory_over_cap: Option<usize>,
    pub logs: Vec<(String, &'static str, String)>,
    pub counters: Vec<(String, String, u32)>,
    /// What the filter said just before its current call trapped (`host.report-error`).
    pub reported: Option<String>,
    pub scope: CallScope,
    shared: Option<Arc<SharedTable>>,
    rng: u64,
    origin: Instant,
    peer_keys: PeerKeys,
}

impl State {
    pub fn new(filter: Arc<str>, caps: Capabilities, limits: Limits, shared: Option<Arc<SharedTable>>, origin: Instant) -> Self {
        // Seeded per instance from the clock and the state's address: fast, not for secrets.
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) ^ (origin.elapsed().as_nanos() as u64).rotate_left(32);
        State {
            filter, caps, limits, initial_memory_over_cap: None, logs: Vec::new(), counters: Vec::new(), reported: None,
            scope: CallScope::default(), shared, rng: seed | 1, origin, peer_keys: PeerKeys::default(),
        }
    }

    fn refuse(&self, cap: &str) -> wasmtime::Error {
        wasmtime::format_err!("filter {} used the \"{cap}\" capability without declaring it in its package", self.filter)
    }

    fn misuse(&self, message: String) -> wasmtime::Error {
        wasmtime::format_err!("AMBIT_ERR_HOST_CALL: filter {}: {message}", self.filter)
    }

    fn shared(&self) -> wasmtime::Result<&SharedTable> {
        match (&self.shared, self.caps.shared) {
            (Some(t), true) => Ok(t),
            _ => Err(self.refuse("shared")),
        }
    }

    /// The directives of the current call, if it is a request phase and the filter may give them.
    fn directives(&mut self, function: &str) -> wasmtime::Result<&mut Directives> {
        if !self.caps.traffic {
            return Err(self.refuse("traffic"));
        }
        if self.scope.phase != Some(Phase::RequestHeaders) {
            let phase = self.scope.phase.map(Phase::name).unwrap_or("no call");
            return Err(self.misuse(format!("called {function} outside the request phase ({phase}); it only takes effect in onRequest")));
        }
        Ok(&mut self.scope.directives)
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_LOG_LINE {
        let mut end = MAX_LOG_LINE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl State {
    /// A call on a lent resource that the filter got wrong traps with this.
    fn refused(&self, r: Refusal) -> wasmtime::Error {
        wasmtime::format_err!("{}: filter {} {}", r.code, self.filter, r.message)
    }

    fn heads<T>(&self, f: impl FnOnce(&Heads) -> Result<T, Refusal>) -> wasmtime::Result<T> {
        f(&self.scope.heads).map_err(|r| self.refused(r))
    }

    fn heads_mut(&mut self, f: impl FnOnce(&mut Heads) -> Result<(), Refusal>) -> wasmtime::Result<()> {
        f(&mut self.scope.heads).map_err(|r| self.refused(r))
    }
}

impl wit_types::Host for State {}

// The host never gives a filter an owned handle, so `drop` is never called with one of
// ours; a borrow's end needs nothing from the host.

impl wit_types::HostContext for State {
    fn direction(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<wit_types::Direction> {
        self.heads(|h| Ok(h.context()?.direction()))
    }

    fn source(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<wit_types::Peer> {
        self.heads(|h| Ok(h.context()?.source()))
    }

    fn destination(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<wit_types::Peer> {
        self.heads(|h| Ok(h.context()?.destination()))
    }

    fn source_key(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<u32> {
        let context = self.scope.heads.context().map_err(|r| self.refused(r))?;
        Ok(self.peer_keys.key(&context.ctx.source))
    }

    fn destination_key(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<u32> {
        let context = self.scope.heads.context().map_err(|r| self.refused(r))?;
        Ok(self.peer_keys.key(&context.ctx.destination))
    }

    fn service(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<Option<String>> {
        self.heads(|h| Ok(h.context()?.ctx.service.clone()))
    }

    fn route(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<Option<String>> {
        self.heads(|h| Ok(h.context()?.ctx.route.clone()))
    }

    fn request_id(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<String> {
        self.heads(|h| Ok(h.context()?.ctx.request_id.clone()))
    }

    fn attempt(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<u32> {
        self.heads(|h| Ok(h.context()?.ctx.attempt))
    }

    fn tls(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<Option<wit_types::TlsInfo>> {
        self.heads(|h| Ok(h.context()?.tls()))
    }

    fn drop(&mut self, _: Resource<ContextHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// The header calls both heads have, on the list of `Side`.
macro_rules! header_methods {
    ($handle:ty, $side:ident) => {
        fn get(&mut self, _: Resource<$handle>, name: String) -> wasmtime::Result<Option<String>> {
            self.heads(|h| h.get(Side::$side, &name))
        }

        fn get_all(&mut self, _: Resource<$handle>, name: String) -> wasmtime::Result<Vec<String>> {
            self.heads(|h| h.get_all(Side::$side, &name))
        }

        fn has(&mut self, _: Resource<$handle>, name: String) -> wasmtime::Result<bool> {
            self.heads(|h| h.has(Side::$side, &name))
        }

        fn set(&mut self, _: Resource<$handle>, name: String, value: String) -> wasmtime::Result<()> {
            self.heads_mut(|h| h.set(Side::$side, name, value))
        }

        fn append(&mut self, _: Resource<$handle>, name: String, value: String) -> wasmtime::Result<()> {
            self.heads_mut(|h| h.append(Side::$side, name, value))
        }

        fn remove(&mut self, _: Resource<$handle>, name: String) -> wasmtime::Result<()> {
            self.heads_mut(|h| h.remove(Side::$side, name))
        }

        fn size(&mut self, _: Resource<$handle>) -> wasmtime::Result<u32> {
            self.heads(|h| h.size(Side::$side))
        }

        fn entries(&mut self, _: Resource<$handle>) -> wasmtime::Result<Vec<(String, String)>> {
            self.heads(|h| h.entries(Side::$side))
        }

        fn drop(&mut self, _: Resource<$handle>) -> wasmtime::Result<()> {
            Ok(())
        }
    };
}

impl wit_types::HostRequestHead for State {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.heads(|h| Ok(h.request()?.method.clone()))
    }

    fn scheme(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.heads(|h| Ok(h.request()?.scheme.clone()))
    }

    fn authority(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.heads(|h| Ok(h.request()?.authority.clone()))
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        self.heads(|h| Ok(h.request()?.path.clone()))
    }

    fn set_method(&mut self, _: Resource<RequestHandle>, value: String) -> wasmtime::Result<()> {
        self.heads_mut(|h| h.set_method(value))
    }

    fn set_authority(&mut self, _: Resource<RequestHandle>, value: String) -> wasmtime::Result<()> {
        self.heads_mut(|h| h.set_authority(value))
    }

    fn set_path(&mut self, _: Resource<RequestHandle>, value: String) -> wasmtime::Result<()> {
        self.heads_mut(|h| h.set_path(value))
    }

    header_methods!(RequestHandle, Request);
}

impl wit_types::HostResponseHead for State {
    fn status(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<u16> {
        self.heads(|h| Ok(h.response()?.status))
    }

    fn set_status(&mut self, _: Resource<ResponseHandle>, status: u16) -> wasmtime::Result<()> {
        self.heads_mut(|h| h.set_status(status))
    }

    header_methods!(ResponseHandle, Response);
}

impl wit_host::Host for State {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if !self.caps.log {
            return Err(self.refuse("log"));
        }
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        crate::limits::count(&self.filter, "log lines", self.logs.len(), crate::limits::LOG_LINES)?;
        self.logs.push((self.filter.to_string(), level, cut(message)));
        Ok(())
    }

    fn counter_add(&mut self, name: String, delta: u32) -> wasmtime::Result<()> {
        if !self.caps.counters {
            return Err(self.refuse("counters"));
        }
        crate::limits::count(&self.filter, "counter updates", self.counters.len(), crate::limits::COUNTER_UPDATES)?;
        self.counters.push((self.filter.to_string(), name, delta));
        Ok(())
    }

    fn now(&mut self) -> wasmtime::Result<f64> {
        if !self.caps.clock {
            return Err(self.refuse("clock"));
        }
        Ok(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0))
    }

    fn monotonic(&mut self) -> wasmtime::Result<f64> {
        if !self.caps.clock {
            return Err(self.refuse("clock"));
        }
        Ok(self.origin.elapsed().as_secs_f64() * 1000.0)
    }

    fn random(&mut self) -> wasmtime::Result<f64> {
        if !self.caps.random {
            return Err(self.refuse("random"));
        }
        // xorshift64*: 53 random bits into [0, 1).
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        Ok((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn shared_get(&mut self, key: String) -> wasmtime::Result<Option<SharedEntry>> {
        let found = self.shared()?.get(&key).map_err(|m| self.misuse(m))?;
        Ok(found.map(|(value, version)| SharedEntry { value, version }))
    }

    fn shared_set(&mut self, key: String, value: String, version: u32) -> wasmtime::Result<bool> {
        self.shared()?.set(&key, &value, version).map_err(|m| self.misuse(m))
    }

    fn shared_add(&mut self, key: String, delta: f64) -> wasmtime::Result<f64> {
        self.shared()?.add(&key, delta).map_err(|m| self.misuse(m))
    }

    fn delay_request(&mut self, ms: u32) -> wasmtime::Result<()> {
        let d = self.directives("delay-request")?;
        d.delay_ms = Some(d.delay_ms.unwrap_or(0).saturating_add(ms).min(MAX_REQUEST_DELAY_MS));
        Ok(())
    }

    fn route_to_subset(&mut self, subset: String) -> wasmtime::Result<()> {
        self.directives("route-to-subset")?.subset = Some(subset);
        Ok(())
    }

    fn set_per_try_timeout(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.directives("set-per-try-timeout")?.per_try_timeout_ms = Some(ms);
        Ok(())
    }

    fn upstream_error(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.scope.upstream_error.clone())
    }

    fn upstream_load(&mut self) -> wasmtime::Result<ServiceLoad> {
        let (active_requests, active_retries) = match self.scope.load_cells {
            Some(cells) => (cells.get(0).load(Ordering::SeqCst).max(0) as u32, cells.get(1).load(Ordering::SeqCst).max(0) as u32),
            None => self.scope.load,
        };
        Ok(ServiceLoad { active_requests, active_retries })
    }

    fn report_error(&mut self, message: String) -> wasmtime::Result<()> {
        self.reported = Some(cut(message));
        Ok(())
    }
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired <= self.limits.memory_bytes {
            return Ok(true);
        }
        if current == 0 {
            self.initial_memory_over_cap = Some(desired);
        }
        // `memory.grow` returns -1: the guest sees an allocation failure and traps.
        Ok(false)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}
