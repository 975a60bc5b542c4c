//! Per-call caps: what one filter call may make the host hold (the same numbers as the V8
//! engine's, `sdk/src/host/call-limits.ts`). Past a cap the call fails with
//! AMBIT_ERR_CALL_LIMIT, a trap the binding's failure policy handles like any other.

use crate::bindings::ambit::filter::types::LocalResponse;

/// Log lines one call may write.
pub const LOG_LINES: usize = 256;
/// Counter updates one call may make.
pub const COUNTER_UPDATES: usize = 1024;
/// Bytes of what one call returns: a local response or a reason (header changes are capped as
/// they are made, `validate.rs`).
pub const RESULT_BYTES: usize = 1 << 20;
/// Phases waiting for a filter thread before new ones are refused, unless the engine options say.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;

/// Fails the call when it already made `cap` log lines or counter updates (`what`).
pub fn count(filter: &str, what: &str, made: usize, cap: usize) -> wasmtime::Result<()> {
    if made < cap {
        return Ok(());
    }
    Err(wasmtime::Error::msg(format!(
        "AMBIT_ERR_CALL_LIMIT: filter {filter} made more than {cap} {what} in one call; the call fails (its binding's failure policy applies)"
    )))
}

fn check(filter: &str, bytes: usize) -> wasmtime::Result<()> {
    if bytes <= RESULT_BYTES {
        return Ok(());
    }
    Err(wasmtime::Error::msg(format!(
        "AMBIT_ERR_CALL_LIMIT: filter {filter} returned {bytes} bytes from one call (header changes or a local response), over {RESULT_BYTES}; the call fails (its binding's failure policy applies)"
    )))
}

/// A local response, if within RESULT_BYTES.
pub fn response(filter: &str, r: LocalResponse) -> wasmtime::Result<LocalResponse> {
    check(filter, r.body.len() + r.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())?;
    Ok(r)
}

/// A deny or retry reason, if within RESULT_BYTES.
pub fn reason(filter: &str, reason: String) -> wasmtime::Result<String> {
    check(filter, reason.len())?;
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fail_past_the_limit_only() {
        assert!(count("f", "log lines", LOG_LINES - 1, LOG_LINES).is_ok());
        assert!(count("f", "log lines", LOG_LINES, LOG_LINES).unwrap_err().to_string().contains("more than 256 log lines"));
        let big = LocalResponse { status: 200, headers: vec![], body: "x".repeat(RESULT_BYTES + 1) };
        assert!(response("f", big).err().unwrap().to_string().contains("over 1048576"));
        assert!(reason("f", "short".into()).is_ok());
    }
}
