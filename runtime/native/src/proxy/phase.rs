//! The seam between the data path and the filter engine: one call per phase, run inline on
//! the connection's thread, over the data path's own head types. `ChainRunner` implements it
//! over the engine's chain executor (`crate::chain`), called synchronously: no job queue, no
//! JSON, no thread crossing.

use std::sync::Arc;
use std::sync::atomic::AtomicI32;

use serde::Serialize;

use crate::chain;
use crate::filter::FilterModule;
use crate::heads::Heads;
use crate::host::LoadCells;
use crate::wire;

pub type HeaderList = Vec<(String, String)>;

#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub headers: HeaderList,
}

#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: HeaderList,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Peer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub address: String,
    pub port: u16,
}

/// What filters know about a request (or, with `request_id` empty, a connection).
#[derive(Clone, Debug)]
pub struct Context {
    pub direction: Direction,
    pub source: Peer,
    pub destination: Peer,
    pub service: Option<String>,
    pub route: Option<String>,
    pub request_id: String,
    pub attempt: u32,
    /// The TLS session the connection arrived on (HBONE): version, cipher, SNI.
    pub tls: Option<wire::TlsInfo>,
}

/// What request-phase filters asked of the host.
#[derive(Clone, Debug, Default)]
pub struct Directives {
    pub delay_ms: Option<u32>,
    pub subset: Option<String>,
    pub per_try_timeout_ms: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: HeaderList,
    pub body: String,
}

/// How a phase ended; header changes are already applied to the head passed in.
#[derive(Debug)]
pub enum Outcome {
    Continue(Directives),
    /// A filter answered (or failed closed): `reason` for the access log.
    Respond { response: LocalResponse, filter: String, reason: String },
    Deny { reason: String, filter: String },
    Retry { delay_ms: u32, reason: String, filter: String },
}

/// Per-phase facts for telemetry, handed to Node in batches (`ambit_filter_*` metrics, filter logs).
#[derive(Default, Serialize)]
pub struct PhaseReport {
    pub calls: Vec<wire::FilterCall>,
    pub failures: Vec<wire::FilterFailure>,
    pub logs: Vec<(String, &'static str, String)>,
    pub counters: Vec<(String, String, u32)>,
}

/// The destination's live load counters: `[0]` requests in flight, `[1]` of those retrying.
pub type LoadCounters = Arc<[AtomicI32; 2]>;

/// Runs one phase of a destination's filters.
pub trait PhaseRunner: Send + Sync {
    fn has_connection_phase(&self) -> bool;
    fn has_request_phases(&self) -> bool;
    fn on_connection(&self, ctx: &Context, report: &mut PhaseReport) -> Outcome;
    fn on_request(&self, ctx: &Context, head: &mut RequestHead, load: &LoadCounters, report: &mut PhaseReport) -> Outcome;
    fn on_response(&self, ctx: &Context, req: &RequestHead, res: &mut ResponseHead, upstream_error: Option<&str>, load: &LoadCounters, report: &mut PhaseReport) -> Outcome;
}

/// A chain of loaded filters, run through `crate::chain::run_phase` on the calling thread.
pub struct ChainRunner {
    pub chain: Arc<Vec<Arc<FilterModule>>>,
}

fn peer(p: &Peer) -> wire::Peer {
    wire::Peer { identity: p.identity.clone(), workload: p.workload.clone(), namespace: p.namespace.clone(), address: p.address.clone(), port: p.port }
}

fn context(c: &Context) -> wire::Context {
    wire::Context {
        direction: match c.direction {
            Direction::Inbound => wire::Direction::Inbound,
            Direction::Outbound => wire::Direction::Outbound,
        },
        source: peer(&c.source),
        destination: peer(&c.destination),
        service: c.service.clone(),
        route: c.route.clone(),
        request_id: c.request_id.clone(),
        attempt: c.attempt,
        tls: c.tls.clone(),
    }
}

fn request(h: &RequestHead) -> wire::RequestHead {
    wire::RequestHead { method: h.method.clone(), scheme: h.scheme.clone(), authority: h.authority.clone(), path: h.path.clone(), headers: h.headers.clone() }
}

/// The head, moved into a phase's input (it comes back with the filters' changes).
fn lend_request(h: &mut RequestHead) -> wire::RequestHead {
    use std::mem::take;
    wire::RequestHead { method: take(&mut h.method), scheme: take(&mut h.scheme), authority: take(&mut h.authority), path: take(&mut h.path), headers: take(&mut h.headers) }
}

/// The failure response every engine gives a fail-closed filter (`failureResponse` in
/// runtime/src/filters/chain.ts): the filter and the kind of failure; the message is the
/// operator's (the access log and the filter log), not the client's.
pub fn failure_response(filter: &str, kind: &str) -> LocalResponse {
    LocalResponse {
        status: 503,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into()), ("x-ambit-filter-error".into(), format!("{filter}; {kind}"))],
        body: format!("filter {filter} failed ({kind})\n"),
    }
}

fn kind_name(k: wire::CallOutcome) -> &'static str {
    match k {
        wire::CallOutcome::Ok => "ok",
        wire::CallOutcome::Trap => "trap",
        wire::CallOutcome::Deadline => "deadline",
        wire::CallOutcome::Unavailable => "unavailable",
    }
}

impl ChainRunner {
    /// Runs the phase; answers its result, whether it was the connection phase, and the heads
    /// as the filters left them.
    fn run(&self, input: wire::PhaseInput, load: Option<&LoadCounters>, report: &mut PhaseReport) -> (wire::PhaseResult, bool, Heads) {
        let cells = load.map(|l| LoadCells(l.as_ptr()));
        let is_connection = matches!(input, wire::PhaseInput::Connection { .. });
        let (out, heads) = chain::run_phase_with_heads(&self.chain, input, cells);
        report.calls = out.calls;
        report.failures = out.failures;
        report.logs = out.logs;
        report.counters = out.counters;
        (out.result, is_connection, heads)
    }

    /// What the data path does next. The heads came back with the changes in place, so a
    /// `continue`'s operations (recorded for other callers) are not applied again here.
    fn outcome(result: wire::PhaseResult, connection: bool) -> Outcome {
        match result {
            wire::PhaseResult::Continue { directives, .. } => {
                Outcome::Continue(directives.map(|d| Directives { delay_ms: d.delay_ms, subset: d.subset, per_try_timeout_ms: d.per_try_timeout_ms }).unwrap_or_default())
            }
            wire::PhaseResult::Respond { response, filter } => Outcome::Respond {
                reason: format!("status {}", response.status),
                response: LocalResponse { status: response.status, headers: response.headers, body: response.body },
                filter,
            },
            wire::PhaseResult::Deny { reason, filter } => Outcome::Deny { reason, filter },
            wire::PhaseResult::Retry { retry, filter } => Outcome::Retry { delay_ms: retry.delay_ms, reason: retry.reason, filter },
            wire::PhaseResult::Closed { failure } => {
                let kind = kind_name(failure.kind);
                if connection {
                    Outcome::Deny { reason: format!("filter {} failed ({kind}): {}", failure.filter, failure.message), filter: failure.filter }
                } else {
                    Outcome::Respond {
                        response: failure_response(&failure.filter, kind),
                        reason: format!("{kind}: {}", failure.message),
                        filter: failure.filter,
                    }
                }
            }
        }
    }
}

impl PhaseRunner for ChainRunner {
    fn has_connection_phase(&self) -> bool {
        self.chain.iter().any(|m| m.phases.connection)
    }

    fn has_request_phases(&self) -> bool {
        self.chain.iter().any(|m| m.phases.request_headers || m.phases.response_headers)
    }

    fn on_connection(&self, ctx: &Context, report: &mut PhaseReport) -> Outcome {
        let input = wire::PhaseInput::Connection { conn: wire::Connection { context: context(ctx), tls: ctx.tls.clone() }, facts: wire::Facts::default() };
        let (result, conn, _) = self.run(input, None, report);
        Self::outcome(result, conn)
    }

    fn on_request(&self, ctx: &Context, head: &mut RequestHead, load: &LoadCounters, report: &mut PhaseReport) -> Outcome {
        // The head is moved in and taken back as the filters left it: no copy, and their
        // changes need no second application.
        let input = wire::PhaseInput::RequestHeaders { ctx: context(ctx), request: lend_request(head), facts: wire::Facts::default() };
        let (result, conn, heads) = self.run(input, Some(load), report);
        if let Some(r) = heads.request {
            *head = RequestHead { method: r.method, scheme: r.scheme, authority: r.authority, path: r.path, headers: r.headers };
        }
        Self::outcome(result, conn)
    }

    fn on_response(&self, ctx: &Context, req: &RequestHead, res: &mut ResponseHead, upstream_error: Option<&str>, load: &LoadCounters, report: &mut PhaseReport) -> Outcome {
        let input = wire::PhaseInput::ResponseHeaders {
            ctx: context(ctx),
            request: request(req),
            response: wire::ResponseHead { status: res.status, headers: std::mem::take(&mut res.headers) },
            facts: wire::Facts { upstream_error: upstream_error.map(str::to_string), load: None },
        };
        let (result, conn, heads) = self.run(input, Some(load), report);
        if let Some(r) = heads.response {
            res.status = r.status;
            res.headers = r.headers;
        }
        Self::outcome(result, conn)
    }
}
