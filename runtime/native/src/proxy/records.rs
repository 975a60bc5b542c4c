//! What the data path reports, kept until Node takes it in a batch (`takeRecords`): one
//! record per request and per connection (Node builds the access log and the Prometheus
//! metrics from them, with the names and format of the Node data path), and per filter
//! phase (calls, failures, filter logs and counters).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

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

#[derive(Default)]
pub struct Records {
    pending: Mutex<Vec<String>>,
    dropped: AtomicU64,
}

impl Records {
    fn push(&self, line: String) {
        let mut p = self.pending.lock().unwrap();
        if p.len() >= MAX_PENDING {
            p.remove(0);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        p.push(line);
    }

    pub fn request(&self, r: &RequestRecord) {
        if let Ok(s) = serde_json::to_string(r) {
            self.push(format!("{{\"type\":\"request\",\"r\":{s}}}"));
        }
    }

    pub fn connection(&self, r: &ConnectionRecord) {
        if let Ok(s) = serde_json::to_string(r) {
            self.push(format!("{{\"type\":\"connection\",\"r\":{s}}}"));
        }
    }

    /// A filter phase that ran (for `ambit_filter_*` metrics, filter logs and counters).
    pub fn phase(&self, phase: &'static str, report: &PhaseReport) {
        if let Ok(s) = serde_json::to_string(report) {
            self.push(format!("{{\"type\":\"phase\",\"phase\":\"{phase}\",\"r\":{s}}}"));
        }
    }

    /// Everything pending as one JSON array, and how many records were dropped since the last take.
    pub fn take(&self) -> (String, u64) {
        let lines = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        out.push('[');
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l);
        }
        out.push(']');
        (out, self.dropped.swap(0, Ordering::Relaxed))
    }
}
