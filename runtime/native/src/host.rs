//! What a filter instance's store holds, and the `ambit:filter/host` imports,
//! implemented natively: clocks are answered here; log lines and counter updates are
//! buffered and handed to JavaScript with the phase's result, so a filter call never
//! waits on the event loop.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;

use crate::bindings::ambit::filter::host::{self as wit_host, LogLevel};
use crate::bindings::ambit::filter::types as wit_types;

/// Longest log line or error report a filter may write; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// Capabilities a filter package declares (`"ambit": { "capabilities": [...] }`).
#[derive(Clone, Copy, Default, Debug)]
pub struct Capabilities {
    pub log: bool,
    pub counters: bool,
    pub clock: bool,
}

impl Capabilities {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut caps = Capabilities::default();
        for c in list {
            match c.as_str() {
                "log" => caps.log = true,
                "counters" => caps.counters = true,
                "clock" => caps.clock = true,
                other => return Err(format!("unknown capability \"{other}\" (known: log, counters, clock)")),
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
    origin: Instant,
}

impl State {
    pub fn new(filter: Arc<str>, caps: Capabilities, limits: Limits, origin: Instant) -> Self {
        State { filter, caps, limits, initial_memory_over_cap: None, logs: Vec::new(), counters: Vec::new(), reported: None, origin }
    }

    fn refuse(&self, cap: &str) -> wasmtime::Error {
        wasmtime::format_err!("filter {} used the \"{cap}\" capability without declaring it in its package", self.filter)
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

impl wit_types::Host for State {}

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
        self.logs.push((self.filter.to_string(), level, cut(message)));
        Ok(())
    }

    fn counter_add(&mut self, name: String, delta: u32) -> wasmtime::Result<()> {
        if !self.caps.counters {
            return Err(self.refuse("counters"));
        }
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
