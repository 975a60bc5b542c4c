//! The JSON shapes that cross between JavaScript and the engine. They mirror the
//! SDK's TypeScript ABI types (`@ambit/filter-sdk` `abi/types.ts`): camelCase fields,
//! variants as `{ tag, val }`.

use serde::{Deserialize, Serialize};

use crate::bindings::ambit::filter::types as wit;

pub type HeaderList = Vec<(String, String)>;

#[derive(Deserialize, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub identity: Option<String>,
    pub workload: Option<String>,
    pub namespace: Option<String>,
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub direction: Direction,
    pub source: Peer,
    pub destination: Peer,
    pub service: Option<String>,
    pub route: Option<String>,
    pub request_id: String,
    pub attempt: u32,
    /// The TLS session the request arrived on, when the caller knows it.
    #[serde(default)]
    pub tls: Option<TlsInfo>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Deserialize, Clone, Debug)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    pub sni: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct Connection {
    pub context: Context,
    pub tls: Option<TlsInfo>,
}

#[derive(Deserialize, Clone)]
pub struct RequestHead {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub headers: HeaderList,
}

#[derive(Deserialize, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: HeaderList,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLoad {
    pub active_requests: u32,
    pub active_retries: u32,
}

/// What the host knows about the attempt (`AttemptFacts`).
#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub upstream_error: Option<String>,
    /// A snapshot, used when no live load counters come with the job.
    pub load: Option<ServiceLoad>,
}

/// One phase of a chain, as `FilterChain.run` receives it (the live load counters travel
/// beside the JSON).
#[derive(Deserialize, Clone)]
#[serde(tag = "phase")]
pub enum PhaseInput {
    #[serde(rename = "connection")]
    Connection {
        conn: Connection,
        #[serde(default)]
        facts: Facts,
    },
    #[serde(rename = "requestHeaders")]
    RequestHeaders {
        ctx: Context,
        request: RequestHead,
        #[serde(default)]
        facts: Facts,
    },
    #[serde(rename = "responseHeaders")]
    ResponseHeaders {
        ctx: Context,
        request: RequestHead,
        response: ResponseHead,
        #[serde(default)]
        facts: Facts,
    },
}

/// What request-phase filters asked of the host (`RequestDirectives`).
#[derive(Serialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Directives {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u32>,
}

impl Directives {
    pub fn is_empty(&self) -> bool {
        self == &Directives::default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "tag", content = "val", rename_all = "lowercase")]
pub enum HeaderOp {
    Set((String, String)),
    Append((String, String)),
    Remove(String),
}

#[derive(Serialize)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: HeaderList,
    pub body: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryRequest {
    pub delay_ms: u32,
    pub reason: String,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum CallOutcome {
    Ok,
    Trap,
    Deadline,
    Unavailable,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCall {
    pub filter: String,
    pub duration_ms: f64,
    pub outcome: CallOutcome,
}

#[derive(Serialize, Clone, Copy, Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    FailClosed,
    FailOpen,
}

#[derive(Serialize)]
pub struct FilterFailure {
    pub filter: String,
    pub kind: CallOutcome,
    pub message: String,
    pub policy: FailurePolicy,
}

/// How a phase ended. `closed` is a fail-closed failure: the caller turns it into a
/// deny or a 503 the same way for every engine.
#[derive(Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum PhaseResult {
    Continue {
        ops: Vec<HeaderOp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        directives: Option<Directives>,
    },
    Respond { response: LocalResponse, filter: String },
    Deny { reason: String, filter: String },
    Retry { retry: RetryRequest, filter: String },
    Closed { failure: FilterFailure },
}

#[derive(Serialize)]
pub struct PhaseOutcome {
    #[serde(flatten)]
    pub result: PhaseResult,
    pub calls: Vec<FilterCall>,
    pub failures: Vec<FilterFailure>,
    /// `[filter, level, message]` written through `host.log` during the phase.
    pub logs: Vec<(String, &'static str, String)>,
    /// `[filter, name, delta]` added through `host.counter-add` during the phase.
    pub counters: Vec<(String, String, u32)>,
}

// ---- JSON → WIT (when a filter asks) ----

pub fn peer(p: &Peer) -> wit::Peer {
    wit::Peer {
        identity: p.identity.clone(),
        workload: p.workload.clone(),
        namespace: p.namespace.clone(),
        address: p.address.clone(),
        port: p.port,
    }
}

pub fn tls(t: &TlsInfo) -> wit::TlsInfo {
    wit::TlsInfo { version: t.version.clone(), cipher: t.cipher.clone(), sni: t.sni.clone() }
}
