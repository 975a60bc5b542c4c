//! Runs one phase over a chain of filters in native code: request-side phases in
//! chain order, the response phase in reverse; header changes applied as they go so
//! each filter sees the ones before it; the first respond/deny/retry ends the phase;
//! a failed call is handled by its binding's failure policy. The same rules as the
//! JavaScript executor (`runtime/src/filters/chain.ts`), in one crossing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::bindings::ambit::filter::types::{ConnectionAction, RequestAction, ResponseAction};
use crate::filter::{FilterModule, elapsed_ms};
use crate::host::{CallScope, LoadCells, Phase};
use crate::limits;
use crate::ops::{apply_request_ops, apply_response_ops};
use crate::wire::{self, CallOutcome, FailurePolicy, FilterCall, FilterFailure, HeaderOp, PhaseInput, PhaseOutcome, PhaseResult, RetryRequest};

pub type Chain = [Arc<FilterModule>];


fn implements(m: &FilterModule, input: &PhaseInput) -> bool {
    match input {
        PhaseInput::Connection { .. } => m.phases.connection,
        PhaseInput::RequestHeaders { .. } => m.phases.request_headers,
        PhaseInput::ResponseHeaders { .. } => m.phases.response_headers,
    }
}

enum Action {
    Continue(Vec<HeaderOp>),
    Respond(wire::LocalResponse),
    Deny(String),
    Retry(RetryRequest),
}

/// `load`: the destination's live load counters, when the caller has them.
pub fn run_phase(chain: &Chain, mut input: PhaseInput, load: Option<LoadCells>) -> PhaseOutcome {
    let mut order: Vec<usize> = (0..chain.len()).filter(|&i| implements(&chain[i], &input)).collect();
    if matches!(input, PhaseInput::ResponseHeaders { .. }) {
        order.reverse();
    }
    let facts = input.facts();
    let snapshot = facts.load.unwrap_or_default();
    let mut scope = CallScope {
        phase: Some(match input {
            PhaseInput::Connection { .. } => Phase::Connection,
            PhaseInput::RequestHeaders { .. } => Phase::RequestHeaders,
            PhaseInput::ResponseHeaders { .. } => Phase::ResponseHeaders,
        }),
        upstream_error: facts.upstream_error.clone(),
        load_cells: load,
        load: (snapshot.active_requests, snapshot.active_retries),
        directives: Default::default(),
    };
    let mut ops: Vec<HeaderOp> = Vec::new();
    let mut calls = Vec::new();
    let mut failures = Vec::new();
    let mut logs = Vec::new();
    let mut counters = Vec::new();
    let finish = |result, calls, failures, logs, counters| PhaseOutcome { result, calls, failures, logs, counters };
    // The context and the connection do not change during a phase: converted once for every member.
    // (The request and response heads are converted per member: each sees the changes before it.)
    let wit_ctx = match &input {
        PhaseInput::RequestHeaders { ctx, .. } | PhaseInput::ResponseHeaders { ctx, .. } => Some(wire::context(ctx)),
        PhaseInput::Connection { .. } => None,
    };
    let wit_conn = match &input {
        PhaseInput::Connection { conn, .. } => Some(wire::connection(conn)),
        _ => None,
    };

    for index in order {
        let member = &chain[index];
        let started = Instant::now();
        let result = member.call(&mut scope, &mut logs, &mut counters, |store, filter| {
            let handler = filter.ambit_filter_handler();
            Ok(match &input {
                PhaseInput::Connection { .. } => match handler.call_on_connection(store, wit_conn.as_ref().expect("converted above"))? {
                    ConnectionAction::Allow => Action::Continue(Vec::new()),
                    ConnectionAction::Deny(reason) => Action::Deny(limits::reason(&member.name, reason)?),
                },
                PhaseInput::RequestHeaders { request, .. } => {
                    match handler.call_on_request_headers(store, wit_ctx.as_ref().expect("converted above"), &wire::request_head(request))? {
                        RequestAction::Proceed(o) => Action::Continue(limits::ops(&member.name, wire::header_ops(o))?),
                        RequestAction::Respond(r) => Action::Respond(limits::response(&member.name, wire::local_response(r))?),
                    }
                }
                PhaseInput::ResponseHeaders { request, response, .. } => {
                    match handler.call_on_response_headers(store, wit_ctx.as_ref().expect("converted above"), &wire::request_head(request), &wire::response_head(response))? {
                        ResponseAction::Proceed(o) => Action::Continue(limits::ops(&member.name, wire::header_ops(o))?),
                        ResponseAction::Respond(r) => Action::Respond(limits::response(&member.name, wire::local_response(r))?),
                        ResponseAction::Retry(r) => Action::Retry(RetryRequest { delay_ms: r.delay_ms, reason: limits::reason(&member.name, r.reason)? }),
                    }
                }
            })
        });
        let duration_ms = elapsed_ms(started);
        let filter = member.name.to_string();
        match result {
            Err(f) => {
                calls.push(FilterCall { filter: filter.clone(), duration_ms, outcome: f.kind });
                let failure = FilterFailure { filter: filter.clone(), kind: f.kind, message: f.message, policy: member.policy };
                if member.policy == FailurePolicy::FailOpen {
                    failures.push(failure);
                    continue;
                }
                let closed = FilterFailure { filter, kind: failure.kind, message: failure.message.clone(), policy: failure.policy };
                failures.push(failure);
                return finish(PhaseResult::Closed { failure: closed }, calls, failures, logs, counters);
            }
            Ok(action) => {
                calls.push(FilterCall { filter: filter.clone(), duration_ms, outcome: CallOutcome::Ok });
                match action {
                    Action::Continue(new_ops) => {
                        if !new_ops.is_empty() {
                            match &mut input {
                                PhaseInput::RequestHeaders { request, .. } => apply_request_ops(request, &new_ops),
                                PhaseInput::ResponseHeaders { response, .. } => apply_response_ops(response, &new_ops),
                                PhaseInput::Connection { .. } => {}
                            }
                            ops.extend(new_ops);
                        }
                    }
                    Action::Respond(response) => return finish(PhaseResult::Respond { response, filter }, calls, failures, logs, counters),
                    Action::Deny(reason) => return finish(PhaseResult::Deny { reason, filter }, calls, failures, logs, counters),
                    Action::Retry(retry) => {
                        // A first attempt deciding to retry counts as retrying from now on, before
                        // any other phase reads the counters (the proxy subtracts it at the end).
                        if let (PhaseInput::ResponseHeaders { ctx, .. }, Some(cells)) = (&input, load) {
                            if ctx.attempt == 1 {
                                cells.get(1).fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        return finish(PhaseResult::Retry { retry, filter }, calls, failures, logs, counters);
                    }
                }
            }
        }
    }
    let directives = (matches!(input, PhaseInput::RequestHeaders { .. }) && !scope.directives.is_empty()).then_some(scope.directives);
    finish(PhaseResult::Continue { ops, directives }, calls, failures, logs, counters)
}
