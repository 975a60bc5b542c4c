//! What the host lends the filters of one phase: the context, the request head and
//! the response head (WIT resources of `ambit:filter/types`). They are built once per
//! phase from its input and handed to each filter in turn as borrows; a filter reads
//! only what it asks for and changes a head in place, so the next filter sees the
//! change. Every change is also recorded as a header operation (the list the
//! JavaScript side applies to the real request or response), and journaled, so a call
//! that fails is taken back before the next filter runs.
//!
//! Rules: names are lower-case in the lists and lookups ignore case; `set`, `append`
//! and `remove` keep their 0.1 meaning (`ops.rs`); method, path, authority and status
//! are fields, changed through their setters and recorded as `set` operations of
//! `:method`, `:path`, `:authority` and `:status`, the operations 0.1 filters returned.
//! What a filter writes is validated first (`validate.rs`); in the response phase the
//! request is the one that was forwarded and cannot be changed.

use crate::bindings::ambit::filter::types as wit;
use crate::ops::{self, Undo};
use crate::validate;
use crate::wire::{self, HeaderList, HeaderOp, RequestHead, ResponseHead};

/// The `context` resource as the bindings see it; the facts are in [`Heads`].
pub struct ContextHandle;
/// The `request-head` resource as the bindings see it.
pub struct RequestHandle;
/// The `response-head` resource as the bindings see it.
pub struct ResponseHandle;

/// Why a call on a head traps: the filter's fault, with a coded message that completes
/// "filter <name> …".
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

const OUTPUT: &str = "AMBIT_ERR_FILTER_OUTPUT";
const MISUSE: &str = "AMBIT_ERR_HOST_CALL";

fn invalid(message: String) -> Refusal {
    Refusal { code: OUTPUT, message }
}

/// Which head a header call is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Request,
    Response,
}

/// The request's fields that are not headers.
#[derive(Clone, Copy, Debug)]
enum Field {
    Method,
    Authority,
    Path,
}

impl Field {
    /// The pseudo-header its changes are recorded as.
    fn name(self) -> &'static str {
        match self {
            Field::Method => ":method",
            Field::Authority => ":authority",
            Field::Path => ":path",
        }
    }

    fn function(self) -> &'static str {
        match self {
            Field::Method => "set-method",
            Field::Authority => "set-authority",
            Field::Path => "set-path",
        }
    }

    fn of(self, r: &mut RequestHead) -> &mut String {
        match self {
            Field::Method => &mut r.method,
            Field::Authority => &mut r.authority,
            Field::Path => &mut r.path,
        }
    }

    fn check(self, value: &str) -> Result<(), String> {
        match self {
            Field::Method => validate::method(value),
            Field::Authority => validate::authority(value),
            Field::Path => validate::path(value),
        }
    }
}

/// One journaled change of the current call.
#[derive(Debug)]
enum Change {
    Field(Field, String),
    Status(u16),
    Headers(Side, Undo),
}

/// The context's facts, converted to WIT values only when a filter asks for one.
pub struct ContextFacts {
    pub ctx: wire::Context,
    pub tls: Option<wire::TlsInfo>,
}

/// The heads and context of one phase, and the changes made to them.
#[derive(Default)]
pub struct Heads {
    pub context: Option<ContextFacts>,
    pub request: Option<RequestHead>,
    pub response: Option<ResponseHead>,
    /// The response phase: the request is the forwarded one.
    pub request_read_only: bool,
    /// Changes of the calls that succeeded, in order: what the JavaScript side applies.
    pub ops: Vec<HeaderOp>,
    journal: Vec<Change>,
    /// `ops.len()` when the current call began.
    ops_mark: usize,
    /// Header entries, and bytes of names and values, the current call added.
    added: u32,
    added_bytes: usize,
}

impl Heads {
    /// Heads of a phase; header names are lower-cased on the way in.
    pub fn new(context: ContextFacts, mut request: Option<RequestHead>, mut response: Option<ResponseHead>) -> Self {
        if let Some(r) = &mut request {
            ops::lower_names(&mut r.headers);
        }
        if let Some(r) = &mut response {
            ops::lower_names(&mut r.headers);
        }
        let request_read_only = response.is_some();
        Heads { context: Some(context), request, response, request_read_only, ..Default::default() }
    }

    /// A filter call begins: the changes so far are kept.
    pub fn begin_call(&mut self) {
        self.journal.clear();
        self.ops_mark = self.ops.len();
        self.added = 0;
        self.added_bytes = 0;
    }

    /// The current call failed: its changes are taken back, newest first.
    pub fn roll_back(&mut self) {
        while let Some(change) = self.journal.pop() {
            match change {
                Change::Field(f, old) => {
                    if let Some(r) = &mut self.request {
                        *f.of(r) = old;
                    }
                }
                Change::Status(old) => {
                    if let Some(r) = &mut self.response {
                        r.status = old;
                    }
                }
                Change::Headers(side, u) => {
                    if let Some(list) = self.list_mut(side) {
                        ops::undo(list, u);
                    }
                }
            }
        }
        self.ops.truncate(self.ops_mark);
        self.added = 0;
        self.added_bytes = 0;
    }

    // ---- reads ----

    pub fn context(&self) -> Result<&ContextFacts, Refusal> {
        self.context.as_ref().ok_or_else(|| Refusal { code: MISUSE, message: "used a context outside the call it was lent for".into() })
    }

    pub fn request(&self) -> Result<&RequestHead, Refusal> {
        self.request.as_ref().ok_or_else(|| Refusal { code: MISUSE, message: "used a request head, which is not lent in this phase".into() })
    }

    pub fn response(&self) -> Result<&ResponseHead, Refusal> {
        self.response.as_ref().ok_or_else(|| Refusal { code: MISUSE, message: "used a response head, which is not lent in this phase".into() })
    }

    fn list(&self, side: Side) -> Result<&HeaderList, Refusal> {
        Ok(match side {
            Side::Request => &self.request()?.headers,
            Side::Response => &self.response()?.headers,
        })
    }

    fn list_mut(&mut self, side: Side) -> Option<&mut HeaderList> {
        match side {
            Side::Request => self.request.as_mut().map(|r| &mut r.headers),
            Side::Response => self.response.as_mut().map(|r| &mut r.headers),
        }
    }

    pub fn get(&self, side: Side, name: &str) -> Result<Option<String>, Refusal> {
        Ok(ops::get(self.list(side)?, name).map(str::to_string))
    }

    pub fn get_all(&self, side: Side, name: &str) -> Result<Vec<String>, Refusal> {
        Ok(ops::get_all(self.list(side)?, name))
    }

    pub fn has(&self, side: Side, name: &str) -> Result<bool, Refusal> {
        Ok(ops::get(self.list(side)?, name).is_some())
    }

    pub fn size(&self, side: Side) -> Result<u32, Refusal> {
        Ok(self.list(side)?.len() as u32)
    }

    pub fn entries(&self, side: Side) -> Result<HeaderList, Refusal> {
        Ok(self.list(side)?.clone())
    }

    // ---- changes ----

    /// Refuses a change to the forwarded request of the response phase.
    fn writable(&self, side: Side, function: &str) -> Result<(), Refusal> {
        if side == Side::Request {
            self.request()?;
            if self.request_read_only {
                return Err(Refusal {
                    code: MISUSE,
                    message: format!("tried to change the request in onResponse ({function}): the forwarded request is read-only in the response phase"),
                });
            }
        } else {
            self.response()?;
        }
        Ok(())
    }

    fn count_added(&mut self, name: &str, value: &str) -> Result<(), Refusal> {
        self.added += 1;
        self.added_bytes += name.len() + value.len();
        if self.added > validate::ADDED_HEADERS || self.added_bytes > validate::ADDED_HEADER_BYTES {
            return Err(invalid(format!(
                "added more than {} headers or {} bytes of headers in one call",
                validate::ADDED_HEADERS,
                validate::ADDED_HEADER_BYTES
            )));
        }
        Ok(())
    }

    /// Sets the method, authority or path.
    fn set_field(&mut self, field: Field, value: String) -> Result<(), Refusal> {
        let function = field.function();
        self.writable(Side::Request, function)?;
        field.check(&value).map_err(invalid)?;
        let request = self.request.as_mut().expect("checked by writable");
        let old = std::mem::replace(field.of(request), value.clone());
        self.journal.push(Change::Field(field, old));
        self.ops.push(HeaderOp::Set((field.name().to_string(), value)));
        Ok(())
    }

    pub fn set_method(&mut self, value: String) -> Result<(), Refusal> {
        self.set_field(Field::Method, value)
    }

    pub fn set_authority(&mut self, value: String) -> Result<(), Refusal> {
        self.set_field(Field::Authority, value)
    }

    pub fn set_path(&mut self, value: String) -> Result<(), Refusal> {
        self.set_field(Field::Path, value)
    }

    pub fn set_status(&mut self, status: u16) -> Result<(), Refusal> {
        self.writable(Side::Response, "set-status")?;
        validate::status(status).map_err(invalid)?;
        let response = self.response.as_mut().expect("checked by writable");
        let old = std::mem::replace(&mut response.status, status);
        self.journal.push(Change::Status(old));
        self.ops.push(HeaderOp::Set((":status".to_string(), status.to_string())));
        Ok(())
    }

    fn checked_name(&mut self, side: Side, function: &str, name: &mut String) -> Result<(), Refusal> {
        self.writable(side, function)?;
        validate::header_name(name).map_err(invalid)?;
        name.make_ascii_lowercase();
        Ok(())
    }

    pub fn set(&mut self, side: Side, mut name: String, value: String) -> Result<(), Refusal> {
        self.checked_name(side, "set", &mut name)?;
        validate::header_value(&name, &value).map_err(invalid)?;
        self.count_added(&name, &value)?;
        let list = self.list_mut(side).expect("checked by writable");
        let removed = ops::remove(list, &name);
        let pushed = ops::push(list, name.clone(), value.clone());
        if let Some(u) = removed {
            self.journal.push(Change::Headers(side, u));
        }
        self.journal.push(Change::Headers(side, pushed));
        self.ops.push(HeaderOp::Set((name, value)));
        Ok(())
    }

    pub fn append(&mut self, side: Side, mut name: String, value: String) -> Result<(), Refusal> {
        self.checked_name(side, "append", &mut name)?;
        validate::header_value(&name, &value).map_err(invalid)?;
        self.count_added(&name, &value)?;
        let list = self.list_mut(side).expect("checked by writable");
        let pushed = ops::push(list, name.clone(), value.clone());
        self.journal.push(Change::Headers(side, pushed));
        self.ops.push(HeaderOp::Append((name, value)));
        Ok(())
    }

    pub fn remove(&mut self, side: Side, mut name: String) -> Result<(), Refusal> {
        self.checked_name(side, "remove", &mut name)?;
        let list = self.list_mut(side).expect("checked by writable");
        if let Some(u) = ops::remove(list, &name) {
            self.journal.push(Change::Headers(side, u));
        }
        self.ops.push(HeaderOp::Remove(name));
        Ok(())
    }
}

// ---- context facts as WIT values ----

impl ContextFacts {
    pub fn direction(&self) -> wit::Direction {
        match self.ctx.direction {
            wire::Direction::Inbound => wit::Direction::Inbound,
            wire::Direction::Outbound => wit::Direction::Outbound,
        }
    }

    pub fn source(&self) -> wit::Peer {
        wire::peer(&self.ctx.source)
    }

    pub fn destination(&self) -> wit::Peer {
        wire::peer(&self.ctx.destination)
    }

    pub fn tls(&self) -> Option<wit::TlsInfo> {
        self.tls.as_ref().map(wire::tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Context, Direction, Peer};

    fn peer() -> Peer {
        Peer { identity: None, workload: None, namespace: None, address: "10.0.0.1".into(), port: 80 }
    }

    fn facts() -> ContextFacts {
        ContextFacts {
            ctx: Context {
                direction: Direction::Inbound, source: peer(), destination: peer(), service: None, route: None,
                request_id: "r1".into(), attempt: 1, tls: None,
            },
            tls: None,
        }
    }

    fn request() -> RequestHead {
        RequestHead {
            method: "GET".into(),
            scheme: "http".into(),
            authority: "svc".into(),
            path: "/".into(),
            headers: vec![("X-A".into(), "1".into()), ("x-b".into(), "2".into()), ("x-a".into(), "3".into())],
        }
    }

    fn response() -> ResponseHead {
        ResponseHead { status: 200, headers: vec![("Server".into(), "up".into())] }
    }

    fn request_phase() -> Heads {
        let mut h = Heads::new(facts(), Some(request()), None);
        h.begin_call();
        h
    }

    fn response_phase() -> Heads {
        let mut h = Heads::new(facts(), Some(request()), Some(response()));
        h.begin_call();
        h
    }

    fn set(n: &str, v: &str) -> HeaderOp {
        HeaderOp::Set((n.into(), v.into()))
    }

    fn pairs(list: &HeaderList) -> Vec<(&str, &str)> {
        list.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn names_are_lowered_on_the_way_in_and_lookups_ignore_case() {
        let h = request_phase();
        assert_eq!(h.request.as_ref().unwrap().headers[0].0, "x-a");
        assert_eq!(h.get(Side::Request, "X-A").unwrap().as_deref(), Some("1"));
        assert_eq!(h.get_all(Side::Request, "x-A").unwrap(), ["1", "3"]);
        assert!(h.has(Side::Request, "X-B").unwrap());
        assert!(!h.has(Side::Request, "x-c").unwrap());
        assert_eq!(h.size(Side::Request).unwrap(), 3);
        // Pseudo-headers are fields, not entries of the list.
        assert_eq!(h.get(Side::Request, ":path").unwrap(), None);
        let r = response_phase();
        assert_eq!(r.get(Side::Response, "SERVER").unwrap().as_deref(), Some("up"));
        assert_eq!(pairs(&r.entries(Side::Response).unwrap()), [("server", "up")]);
    }

    #[test]
    fn set_append_remove_apply_in_place_and_are_recorded() {
        let mut h = request_phase();
        h.set(Side::Request, "X-A".into(), "9".into()).unwrap();
        h.append(Side::Request, "x-b".into(), "4".into()).unwrap();
        h.remove(Side::Request, "X-MISSING".into()).unwrap();
        assert_eq!(pairs(&h.request.as_ref().unwrap().headers), [("x-b", "2"), ("x-a", "9"), ("x-b", "4")]);
        assert_eq!(h.get(Side::Request, "x-a").unwrap().as_deref(), Some("9"));
        assert_eq!(h.ops, [set("x-a", "9"), HeaderOp::Append(("x-b".into(), "4".into())), HeaderOp::Remove("x-missing".into())]);
        h.remove(Side::Request, "x-b".into()).unwrap();
        assert!(!h.has(Side::Request, "x-b").unwrap());
    }

    #[test]
    fn fields_change_through_their_setters_and_are_recorded_as_pseudo_headers() {
        let mut h = request_phase();
        h.set_path("/v2?q=1".into()).unwrap();
        h.set_method("POST".into()).unwrap();
        h.set_authority("other:8080".into()).unwrap();
        let r = h.request.as_ref().unwrap();
        assert_eq!((r.path.as_str(), r.method.as_str(), r.authority.as_str()), ("/v2?q=1", "POST", "other:8080"));
        assert_eq!(h.ops, [set(":path", "/v2?q=1"), set(":method", "POST"), set(":authority", "other:8080")]);
        let mut r = response_phase();
        r.set_status(418).unwrap();
        assert_eq!(r.response.as_ref().unwrap().status, 418);
        assert_eq!(r.ops, [set(":status", "418")]);
        // Not through `set`: a pseudo-header is not a field name.
        let e = r.set(Side::Response, ":status".into(), "503".into()).unwrap_err();
        assert!(e.message.contains("pseudo-headers are set with set-method, set-path, set-authority and set-status"), "{}", e.message);
    }

    #[test]
    fn the_response_phase_request_is_read_only() {
        let mut h = response_phase();
        let before = h.request.clone().unwrap();
        for e in [
            h.set(Side::Request, "x".into(), "1".into()).unwrap_err(),
            h.append(Side::Request, "x".into(), "1".into()).unwrap_err(),
            h.remove(Side::Request, "x-a".into()).unwrap_err(),
            h.set_path("/x".into()).unwrap_err(),
            h.set_method("PUT".into()).unwrap_err(),
            h.set_authority("a".into()).unwrap_err(),
            // Read-only is said first, whatever else is wrong.
            h.set(Side::Request, "bad name".into(), "\n".into()).unwrap_err(),
        ] {
            assert_eq!(e.code, "AMBIT_ERR_HOST_CALL");
            assert!(e.message.contains("the forwarded request is read-only in the response phase"), "{}", e.message);
        }
        let after = h.request.as_ref().unwrap();
        assert_eq!((after.headers.clone(), after.path.clone(), after.method.clone()), (before.headers, before.path, before.method));
        assert!(h.ops.is_empty());
        // Reading it is fine; the response stays writable.
        assert_eq!(h.get(Side::Request, "x-a").unwrap().as_deref(), Some("1"));
        h.set(Side::Response, "x-served".into(), "1".into()).unwrap();
        assert_eq!(h.ops, [set("x-served", "1")]);
    }

    #[test]
    fn invalid_output_is_refused_before_it_changes_anything() {
        let mut h = request_phase();
        let cases = [
            h.set(Side::Request, "bad name".into(), "v".into()).unwrap_err(),
            h.append(Side::Request, "x".into(), "a\r\nb".into()).unwrap_err(),
            h.set(Side::Request, "x".into(), "nul\0".into()).unwrap_err(),
            h.append(Side::Request, "".into(), "v".into()).unwrap_err(),
            h.remove(Side::Request, "a b".into()).unwrap_err(),
            h.set(Side::Request, ":path".into(), "/x".into()).unwrap_err(),
            h.set_path("no-slash".into()).unwrap_err(),
            h.set_method("G T".into()).unwrap_err(),
            h.set_authority("a@b".into()).unwrap_err(),
            h.set(Side::Request, "x".into(), "v".repeat(validate::ADDED_HEADER_BYTES)).unwrap_err(),
        ];
        for e in &cases {
            assert_eq!(e.code, "AMBIT_ERR_FILTER_OUTPUT", "{}", e.message);
        }
        assert!(cases[0].message.starts_with("used the header name \"bad name\", which is not a valid HTTP field name"), "{}", cases[0].message);
        assert!(cases[1].message.starts_with(r#"set the header x to "a\r\nb", which is not a valid HTTP field value"#), "{}", cases[1].message);
        assert!(cases[9].message.contains("bytes of headers in one call"), "{}", cases[9].message);
        let untouched = Heads::new(facts(), Some(request()), None).request.unwrap();
        let r = h.request.as_ref().unwrap();
        assert_eq!((&r.headers, &r.path, &r.method, &r.authority), (&untouched.headers, &untouched.path, &untouched.method, &untouched.authority));
        assert!(h.ops.is_empty());
        let mut r = response_phase();
        for s in [99u16, 600, 0] {
            assert!(r.set_status(s).unwrap_err().message.contains("an HTTP status is 100–599"));
        }
        assert_eq!(r.response.as_ref().unwrap().status, 200);
    }

    #[test]
    fn at_most_100_headers_are_added_per_call() {
        let mut h = request_phase();
        for i in 0..validate::ADDED_HEADERS {
            h.append(Side::Request, format!("x-{i}"), "v".into()).unwrap();
        }
        let e = h.append(Side::Request, "x-more".into(), "v".into()).unwrap_err();
        assert_eq!(e.message, "added more than 100 headers or 65536 bytes of headers in one call");
        // The next call has its own allowance.
        h.begin_call();
        h.set(Side::Request, "x-next".into(), "v".into()).unwrap();
    }

    #[test]
    fn a_failed_call_is_taken_back_and_earlier_calls_kept() {
        let mut h = Heads::new(facts(), Some(request()), Some(ResponseHead { status: 200, headers: vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".into())] }));
        // Both heads writable, to take back changes to each.
        h.request_read_only = false;
        h.begin_call();
        h.set(Side::Request, "x-first".into(), "1".into()).unwrap();
        let after_first = (h.request.clone().unwrap().headers, h.response.clone().unwrap().headers, h.ops.len());
        h.begin_call();
        h.set(Side::Response, "a".into(), "9".into()).unwrap();
        h.remove(Side::Response, "b".into()).unwrap();
        h.append(Side::Response, "c".into(), "4".into()).unwrap();
        h.set_status(404).unwrap();
        h.set_path("/changed".into()).unwrap();
        h.set_method("DELETE".into()).unwrap();
        h.set(Side::Request, "x-first".into(), "2".into()).unwrap();
        h.roll_back();
        let r = h.request.as_ref().unwrap();
        let s = h.response.as_ref().unwrap();
        assert_eq!((r.headers.clone(), s.headers.clone(), h.ops.len()), after_first);
        assert_eq!((r.path.as_str(), r.method.as_str(), s.status), ("/", "GET", 200));
        assert_eq!(h.ops, [set("x-first", "1")]);
    }
}
