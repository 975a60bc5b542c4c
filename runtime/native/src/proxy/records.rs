//! What the data path reports, kept until Node takes it in a batch (`takeRecords`):
//!
//! - metrics, counted here: per label set of `ambit_requests_total` (count, bytes, a
//!   duration histogram), per filter and phase (calls by outcome, a duration histogram),
//!   per filter counter. Node adds each batch's cells to its Prometheus series, so a
//!   request costs no record on its way to the metrics;
//! - records: one per request only when the access log is on; one per connection; one
//!   per filter phase only when it has failures or filter log lines (the calls and
//!   counters are in the cells).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::wire::CallOutcome;

use super::phase::{Direction, Peer, PhaseReport};

/// Records kept between two takes; beyond this the oldest are dropped (and counted).
const MAX_PENDING: usize = 200_000;

#[derive(Serialize, Default, Clone, Debug)]
pub struct HostPort {
    pub address: String,
    pub port: u16,
}

#[derive(Serialize, Clone, Debug)]
pub struct LocalReply {
    pub filter: String,
    pub reason: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub direction: Direction,
    pub protocol: &'static str,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    pub duration_ms: f64,
    pub request_id: String,
    pub source: Peer,
    pub destination: Peer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<HostPort>,
    pub attempts: u32,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_reply: Option<LocalReply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    pub direction: Direction,
    pub mode: &'static str,
    pub source: Peer,
    pub destination: Peer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<HostPort>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<LocalReply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Histogram bounds (seconds) of `ambit_request_duration_seconds` and
/// `ambit_filter_call_duration_seconds`, as Node's metrics define them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Buckets {
    pub request: Vec<f64>,
    pub filter: Vec<f64>,
}

/// The labels of a request series, as Node derives them from these fields.
#[derive(Serialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RequestLabels {
    direction: Direction,
    protocol: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<String>,
    source: LabelPeer,
    destination: LabelPeer,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_reply: Option<LocalFilter>,
}

#[derive(Serialize, Clone, PartialEq, Eq, Hash, Debug)]
struct LabelPeer {
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[derive(Serialize, Clone, PartialEq, Eq, Hash, Debug)]
struct LocalFilter {
    filter: String,
}

/// Observations per bucket (not cumulative; the last is +Inf) and their sum.
#[derive(Serialize, Clone, Debug)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram { counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        if !(v >= 0.0 && v.is_finite()) {
            return;
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct RequestCell {
    labels: RequestLabels,
    count: u64,
    request_bytes: u64,
    response_bytes: u64,
    duration: Histogram,
}

#[derive(Serialize, Debug)]
struct FilterCell {
    phase: &'static str,
    filter: String,
    ok: u64,
    trap: u64,
    deadline: u64,
    unavailable: u64,
    duration: Histogram,
}

#[derive(Default)]
struct Cells {
    requests: HashMap<RequestLabels, RequestCell>,
    /// By phase, then filter name: a call that finds its cell allocates nothing.
    filters: HashMap<&'static str, HashMap<String, FilterCell>>,
    /// By filter, then counter name.
    counters: HashMap<String, HashMap<String, u64>>,
}

/// The value at `key`, inserted with `new` the first time: looked up by `&str`, so an
/// existing entry costs no key allocation.
fn cell<'m, V>(map: &'m mut HashMap<String, V>, key: &str, new: impl FnOnce() -> V) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), new());
    }
    map.get_mut(key).expect("inserted above")
}

#[derive(Default)]
pub struct Records {
    pending: Mutex<Vec<String>>,
    dropped: AtomicU64,
    cells: Mutex<Cells>,
    buckets: Buckets,
    /// Request records are kept for the access log only when it is on.
    access_log: AtomicBool,
}

impl Records {
    pub fn new(buckets: Buckets, access_log: bool) -> Self {
        Records { buckets, access_log: AtomicBool::new(access_log), ..Default::default() }
    }

    fn push(&self, line: String) {
        let mut p = self.pending.lock().unwrap();
        if p.len() >= MAX_PENDING {
            p.remove(0);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        p.push(line);
    }

    /// A request that ended: counted in its cell, and kept as a record for the access log
    /// when that is on. The record is spent: its label fields are moved into the cell's key.
    pub fn request(&self, r: &mut RequestRecord) {
        if self.access_log.load(Ordering::Relaxed) {
            if let Ok(s) = serde_json::to_string(r) {
                self.push(format!("{{\"type\":\"request\",\"r\":{s}}}"));
            }
        }
        use std::mem::take;
        let labels = RequestLabels {
            direction: r.direction,
            protocol: r.protocol,
            status: r.status,
            grpc_status: take(&mut r.grpc_status),
            source: LabelPeer { workload: take(&mut r.source.workload), namespace: take(&mut r.source.namespace) },
            destination: LabelPeer { workload: take(&mut r.destination.workload), namespace: take(&mut r.destination.namespace) },
            service: take(&mut r.service),
            local_reply: r.local_reply.as_mut().map(|l| LocalFilter { filter: take(&mut l.filter) }),
        };
        let mut cells = self.cells.lock().unwrap();
        let bounds = &self.buckets.request;
        let cell = cells.requests.entry(labels).or_insert_with_key(|l| RequestCell {
            labels: l.clone(), count: 0, request_bytes: 0, response_bytes: 0, duration: Histogram::new(bounds),
        });
        cell.count += 1;
        cell.request_bytes += r.bytes_received;
        cell.response_bytes += r.bytes_sent;
        cell.duration.observe(bounds, r.duration_ms / 1000.0);
    }

    pub fn connection(&self, r: &ConnectionRecord) {
        if let Ok(s) = serde_json::to_string(r) {
            self.push(format!("{{\"type\":\"connection\",\"r\":{s}}}"));
        }
    }

    /// A filter phase that ran: its calls and counters into the cells; a record for its
    /// failures and log lines, when it has any.
    pub fn phase(&self, phase: &'static str, report: &PhaseReport) {
        if !report.calls.is_empty() || !report.counters.is_empty() {
            let mut cells = self.cells.lock().unwrap();
            let bounds = &self.buckets.filter;
            let by_filter = cells.filters.entry(phase).or_default();
            for c in &report.calls {
                let cell = cell(by_filter, &c.filter, || FilterCell {
                    phase, filter: c.filter.clone(), ok: 0, trap: 0, deadline: 0, unavailable: 0, duration: Histogram::new(bounds),
                });
                match c.outcome {
                    CallOutcome::Ok => cell.ok += 1,
                    CallOutcome::Trap => cell.trap += 1,
                    CallOutcome::Deadline => cell.deadline += 1,
                    CallOutcome::Unavailable => cell.unavailable += 1,
                }
                cell.duration.observe(bounds, c.duration_ms / 1000.0);
            }
            for (filter, name, delta) in &report.counters {
                *cell(cell(&mut cells.counters, filter, HashMap::new), name, || 0) += u64::from(*delta);
            }
        }
        if report.failures.is_empty() && report.logs.is_empty() {
            return;
        }
        #[derive(Serialize)]
        struct Rare<'a> {
            failures: &'a [crate::wire::FilterFailure],
            logs: &'a [(String, &'static str, String)],
        }
        if let Ok(s) = serde_json::to_string(&Rare { failures: &report.failures, logs: &report.logs }) {
            self.push(format!("{{\"type\":\"phase\",\"phase\":\"{phase}\",\"r\":{s}}}"));
        }
    }

    /// Everything pending as one JSON object: the records, the cells counted since the last
    /// take, and how many records were dropped since then.
    pub fn take(&self) -> String {
        let lines = std::mem::take(&mut *self.pending.lock().unwrap());
        let cells = std::mem::take(&mut *self.cells.lock().unwrap());
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 64);
        out.push_str(&format!("{{\"dropped\":{dropped},\"records\":["));
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l);
        }
        out.push_str("],\"requests\":");
        out.push_str(&serde_json::to_string(&cells.requests.values().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into()));
        out.push_str(",\"filters\":");
        out.push_str(&serde_json::to_string(&cells.filters.values().flat_map(HashMap::values).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into()));
        out.push_str(",\"counters\":");
        let counters: Vec<(&str, &str, u64)> =
            cells.counters.iter().flat_map(|(f, names)| names.iter().map(move |(n, d)| (f.as_str(), n.as_str(), *d))).collect();
        out.push_str(&serde_json::to_string(&counters).unwrap_or_else(|_| "[]".into()));
        out.push('}');
        out
    }
}
