//! Runs one phase over a chain of filters in native code: request-side phases in
//! chain order, the response phase in reverse. The context and heads are built once
//! from the phase's input (`heads.rs`) and lent to each filter in turn; a filter's
//! changes are applied in place, so the next filter sees them, and recorded as the
//! header operations the phase returns. The first respond/deny/retry ends the phase; a
//! failed call is taken back and handled by its binding's failure policy. The same
//! rules as the JavaScript executor (`runtime/src/filters/chain.ts`), in one crossing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::component::Resource;

use crate::bindings::ambit::filter::types::{self as wit, ConnectionAction, RequestAction, ResponseAction};
use crate::filter::{FilterModule, elapsed_ms};
use crate::heads::{ContextFacts, Heads};
use crate::host::{CallScope, LoadCells, Phase};
use crate::limits;
use crate::validate;
use crate::wire::{self, CallOutcome, FailurePolicy, FilterCall, FilterFailure, PhaseInput, PhaseOutcome, PhaseResult, RetryRequest};

pub type Chain = [Arc<FilterModule>];

/// The handles the filters of a phase borrow. Each kind of resource has one value per
/// phase, kept in the store's state, so the representation carries nothing.
const LENT: u32 = 0;

fn implements(m: &FilterModule, phase: Phase) -> bool {
    match phase {
        Phase::Connection => m.phases.connection,
        Phase::RequestHeaders => m.phases.request_headers,
        Phase::ResponseHeaders => m.phases.response_headers,
    }
}

enum Action {
    Continue,
    Respond(wire::LocalResponse),
    Deny(String),
    Retry(RetryRequest),
}

fn refused(filter: &str, message: String) -> wasmtime::Error {
    wasmtime::format_err!("AMBIT_ERR_FILTER_OUTPUT: filter {filter} {message}")
}

/// A local response checked before it can reach the wire; a bad one fails the call.
fn local_response(filter: &str, r: wit::LocalResponse) -> wasmtime::Result<wire::LocalResponse> {
    let wit::LocalResponse { status, mut headers, body } = limits::response(filter, r)?;
    validate::local_response(status, &mut headers, &body).map_err(|m| refused(filter, m))?;
    Ok(wire::LocalResponse { status, headers, body })
}

/// A deny or retry reason, checked the same way.
fn reason(filter: &str, what: &str, reason: String) -> wasmtime::Result<String> {
    let reason = limits::reason(filter, reason)?;
    validate::reason(what, &reason).map_err(|m| refused(filter, m))?;
    Ok(reason)
}

/// The phase, its facts and its heads, taken from the input.
fn split(input: PhaseInput) -> (Phase, wire::Facts, Heads) {
    match input {
        PhaseInput::Connection { conn, facts } => (Phase::Connection, facts, Heads::new(ContextFacts { ctx: conn.context, tls: conn.tls }, None, None)),
        PhaseInput::RequestHeaders { mut ctx, request, facts } => {
            let tls = ctx.tls.take();
            (Phase::RequestHeaders, facts, Heads::new(ContextFacts { ctx, tls }, Some(request), None))
        }
        PhaseInput::ResponseHeaders { mut ctx, request, response, facts } => {
            let tls = ctx.tls.take();
            (Phase::ResponseHeaders, facts, Heads::new(ContextFacts { ctx, tls }, Some(request), Some(response)))
        }
    }
}

/// `load`: the destination's live load counters, when the caller has them.
pub fn run_phase(chain: &Chain, input: PhaseInput, load: Option<LoadCells>) -> PhaseOutcome {
    run_phase_with_heads(chain, input, load).0
}

/// The same, also giving back the heads as the filters left them (their changes applied in
/// place, a failed call's taken back): a caller that moved its heads in takes them back
/// instead of applying the operations to a copy.
pub fn run_phase_with_heads(chain: &Chain, input: PhaseInput, load: Option<LoadCells>) -> (PhaseOutcome, Heads) {
    let (phase, facts, heads) = split(input);
    let attempt = heads.context.as_ref().map_or(1, |c| c.ctx.attempt);
    let snapshot = facts.load.unwrap_or_default();
    let mut scope = CallScope {
        phase: Some(phase),
        upstream_error: facts.upstream_error,
        load_cells: load,
        load: (snapshot.active_requests, snapshot.active_retries),
        directives: Default::default(),
        heads,
    };
    let mut calls = Vec::with_capacity(chain.len());
    let mut failures = Vec::new();
    let mut logs = Vec::new();
    let mut counters = Vec::new();
    let finish = |result, calls, failures, logs, counters| PhaseOutcome { result, calls, failures, logs, counters };

    let reverse = phase == Phase::ResponseHeaders;
    for k in 0..chain.len() {
        let member = &chain[if reverse { chain.len() - 1 - k } else { k }];
        if !implements(member, phase) {
            continue;
        }
        let started = Instant::now();
        scope.heads.begin_call();
        let result = member.call(&mut scope, &mut logs, &mut counters, |store, filter| {
            let handler = filter.ambit_filter_handler();
            let ctx = Resource::new_borrow(LENT);
            Ok(match phase {
                Phase::Connection => match handler.call_on_connection(store, ctx)? {
                    ConnectionAction::Allow => Action::Continue,
                    ConnectionAction::Deny(why) => Action::Deny(reason(&member.name, "deny", why)?),
                },
                Phase::RequestHeaders => match handler.call_on_request_headers(store, ctx, Resource::new_borrow(LENT))? {
                    RequestAction::Proceed => Action::Continue,
                    RequestAction::Respond(r) => Action::Respond(local_response(&member.name, r)?),
                },
                Phase::ResponseHeaders => {
                    match handler.call_on_response_headers(store, ctx, Resource::new_borrow(LENT), Resource::new_borrow(LENT))? {
                        ResponseAction::Proceed => Action::Continue,
                        ResponseAction::Respond(r) => Action::Respond(local_response(&member.name, r)?),
                        ResponseAction::Retry(r) => Action::Retry(RetryRequest { delay_ms: r.delay_ms, reason: reason(&member.name, "retry", r.reason)? }),
                    }
                }
            })
        });
        let duration_ms = elapsed_ms(started);
        let filter = member.name.to_string();
        match result {
            Err(f) => {
                scope.heads.roll_back();
                calls.push(FilterCall { filter: filter.clone(), duration_ms, outcome: f.kind });
                let failure = FilterFailure { filter: filter.clone(), kind: f.kind, message: f.message, policy: member.policy };
                if member.policy == FailurePolicy::FailOpen {
                    failures.push(failure);
                    continue;
                }
                let closed = FilterFailure { filter, kind: failure.kind, message: failure.message.clone(), policy: failure.policy };
                failures.push(failure);
                return (finish(PhaseResult::Closed { failure: closed }, calls, failures, logs, counters), std::mem::take(&mut scope.heads));
            }
            Ok(action) => {
                calls.push(FilterCall { filter: filter.clone(), duration_ms, outcome: CallOutcome::Ok });
                match action {
                    Action::Continue => {}
                    Action::Respond(response) => return (finish(PhaseResult::Respond { response, filter }, calls, failures, logs, counters), std::mem::take(&mut scope.heads)),
                    Action::Deny(reason) => return (finish(PhaseResult::Deny { reason, filter }, calls, failures, logs, counters), std::mem::take(&mut scope.heads)),
                    Action::Retry(retry) => {
                        // A first attempt deciding to retry counts as retrying from now on, before
                        // any other phase reads the counters (the proxy subtracts it at the end).
                        if let (Phase::ResponseHeaders, Some(cells)) = (phase, load) {
                            if attempt == 1 {
                                cells.get(1).fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        return (finish(PhaseResult::Retry { retry, filter }, calls, failures, logs, counters), std::mem::take(&mut scope.heads));
                    }
                }
            }
        }
    }
    let ops = std::mem::take(&mut scope.heads.ops);
    let directives = (phase == Phase::RequestHeaders && !scope.directives.is_empty()).then_some(scope.directives);
    (finish(PhaseResult::Continue { ops, directives }, calls, failures, logs, counters), std::mem::take(&mut scope.heads))
}
