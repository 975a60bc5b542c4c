//! Checks on what a filter hands back before it can reach the wire: header names and
//! values (RFC 9110), the request's method, path and authority, statuses, local
//! responses and reasons, with their size limits. Anything that fails is the filter's
//! fault: the call traps with the message returned here (`AMBIT_ERR_FILTER_OUTPUT`),
//! and the binding's failure policy answers. The rules and limits are the SDK's
//! (`OUTPUT_LIMITS` in `@ambit/filter-sdk/host`), so both engines refuse the same output
//! with the same words. A message completes "filter <name> …".

/// Header entries one call may add to a head (`set` and `append`).
pub const ADDED_HEADERS: u32 = 100;
/// Bytes of header names and values one call may add to a head.
pub const ADDED_HEADER_BYTES: usize = 64 * 1024;
/// Bytes of a path (with its query) a filter may set.
pub const PATH_BYTES: usize = 8 * 1024;
/// Bytes of an authority a filter may set.
pub const AUTHORITY_BYTES: usize = 1024;
/// Bytes of a method a filter may set.
pub const METHOD_BYTES: usize = 64;
/// Header entries of a local response.
pub const RESPONSE_HEADERS: usize = 100;
/// Bytes of header names and values of a local response.
pub const RESPONSE_HEADER_BYTES: usize = 64 * 1024;
/// Bytes of a local response's body.
pub const RESPONSE_BODY_BYTES: usize = 1024 * 1024;
/// Bytes of a deny or retry reason.
pub const REASON_BYTES: usize = 1024;

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// What a filter wrote, quoted as JSON and cut at 64 characters, for messages.
pub fn show(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", serde_json::Value::from(&s[..end])),
        None => serde_json::Value::from(s).to_string(),
    }
}

/// A field name: a token (RFC 9110 §5.1). Pseudo-headers are not names a filter can use.
pub fn header_name(name: &str) -> Result<(), String> {
    if is_token(name) {
        return Ok(());
    }
    Err(format!(
        "used the header name {}, which is not a valid HTTP field name (RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~); pseudo-headers are set with set-method, set-path, set-authority and set-status",
        show(name)
    ))
}

/// A field value: visible characters, space, tab and obs-text (RFC 9110 §5.5); no CR, LF,
/// NUL or other control characters. Values go on the wire as UTF-8, whose bytes beyond
/// ASCII are all obs-text, so any character from U+0080 up is allowed.
pub fn header_value(name: &str, value: &str) -> Result<(), String> {
    if value.chars().all(|c| matches!(c, '\t' | ' '..='~' | '\u{80}'..)) {
        return Ok(());
    }
    Err(format!(
        "set the header {name} to {}, which is not a valid HTTP field value (no CR, LF, NUL or other control characters)",
        show(value)
    ))
}

pub fn method(value: &str) -> Result<(), String> {
    if value.len() <= METHOD_BYTES && is_token(value) {
        return Ok(());
    }
    Err(format!("set the method to {}, which is not an HTTP method (RFC 9110 token)", show(value)))
}

/// A path in origin form: `/`, then visible characters (no space, no control character).
pub fn path(value: &str) -> Result<(), String> {
    let visible = |c: char| matches!(c, '!'..='~' | '\u{80}'..);
    if !(value.starts_with('/') && value.chars().all(visible)) {
        return Err(format!("set the path to {}; a path starts with \"/\" and has no spaces or control characters", show(value)));
    }
    if value.len() > PATH_BYTES {
        return Err(format!("set a path of {} bytes, above the limit of {PATH_BYTES}", value.len()));
    }
    Ok(())
}

/// An authority of RFC 3986 without userinfo: host (name, IPv4, or an IP literal in brackets) and port.
pub fn authority(value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%[]:".contains(c);
    if !value.is_empty() && value.len() <= AUTHORITY_BYTES && value.chars().all(allowed) {
        return Ok(());
    }
    Err(format!("set the authority to {}, which is not host[:port] (RFC 3986, at most {AUTHORITY_BYTES} bytes)", show(value)))
}

/// A status a filter sets on a forwarded response: 100–599.
pub fn status(value: u16) -> Result<(), String> {
    if (100..=599).contains(&value) {
        return Ok(());
    }
    Err(format!("set the status {value}; an HTTP status is 100–599"))
}

/// A deny or retry reason (`what`): at most `REASON_BYTES`.
pub fn reason(what: &str, reason: &str) -> Result<(), String> {
    if reason.len() <= REASON_BYTES {
        return Ok(());
    }
    Err(format!("gave a {what} reason of {} bytes, above the limit of {REASON_BYTES}", reason.len()))
}

/// A local response: status 200–599, valid headers within the limits (names lower-cased
/// here), a body within its limit.
pub fn local_response(status: u16, headers: &mut [(String, String)], body: &str) -> Result<(), String> {
    if !(200..=599).contains(&status) {
        return Err(format!("answered with status {status}; a local response is 200–599"));
    }
    if headers.len() > RESPONSE_HEADERS {
        return Err(format!("answered with {} headers, above the limit of {RESPONSE_HEADERS}", headers.len()));
    }
    let mut bytes = 0;
    for (name, value) in headers.iter_mut() {
        header_name(name)?;
        name.make_ascii_lowercase();
        header_value(name, value)?;
        bytes += name.len() + value.len();
    }
    if bytes > RESPONSE_HEADER_BYTES {
        return Err(format!("answered with {bytes} bytes of headers, above the limit of {RESPONSE_HEADER_BYTES}"));
    }
    if body.len() > RESPONSE_BODY_BYTES {
        return Err(format!("answered with a body of {} bytes, above the limit of {RESPONSE_BODY_BYTES}", body.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_tokens() {
        assert!(header_name("x-request-id").is_ok());
        assert!(header_name("X-Custom_1!").is_ok());
        for bad in ["", "bad name", ":path", "x\r\ny", "é", "a/b"] {
            assert!(header_name(bad).unwrap_err().contains("not a valid HTTP field name"), "{bad:?}");
        }
        assert!(header_name("bad name").unwrap_err().starts_with("used the header name \"bad name\""));
        assert!(header_name(":path").unwrap_err().contains("pseudo-headers are set with set-method"));
    }

    #[test]
    fn values_refuse_cr_lf_nul_and_controls() {
        assert!(header_value("x", "a b\tc ünï ~").is_ok());
        assert!(header_value("x", "").is_ok());
        // Sent as UTF-8: every byte beyond ASCII is obs-text.
        assert!(header_value("x", "中 → €").is_ok());
        for bad in ["a\rb", "a\nb", "a\0b", "a\x01b", "a\x7fb"] {
            let e = header_value("x", bad).unwrap_err();
            assert!(e.contains("not a valid HTTP field value"), "{e}");
        }
        let e = header_value("x-evil", "a\r\nset-cookie: x=1").unwrap_err();
        assert!(e.starts_with(r#"set the header x-evil to "a\r\nset-cookie: x=1""#), "{e}");
    }

    #[test]
    fn request_fields() {
        assert!(method("GET").is_ok() && method("PROPFIND").is_ok());
        assert!(method("GE T").is_err() && method("").is_err() && method(&"M".repeat(METHOD_BYTES + 1)).is_err());
        assert!(path("/a?b=c&d=%20").is_ok() && path("/").is_ok());
        // Sent as UTF-8, like header values.
        assert!(path("/中/é").is_ok());
        for bad in ["a", "*", "", "/a b", "/a\r\n"] {
            assert!(path(bad).unwrap_err().contains("a path starts with \"/\""), "{bad:?}");
        }
        assert!(path(&format!("/{}", "p".repeat(PATH_BYTES))).unwrap_err().contains("above the limit of 8192"));
        assert!(authority("reviews.default:9080").is_ok() && authority("[::1]:80").is_ok() && authority("10.0.0.1").is_ok());
        for bad in ["user@host", "host/x", "", "a b", "h?q", "h#f"] {
            assert!(authority(bad).unwrap_err().contains("not host[:port]"), "{bad:?}");
        }
        assert!(authority(&"a".repeat(AUTHORITY_BYTES + 1)).is_err());
    }

    #[test]
    fn statuses_and_reasons() {
        assert!(status(100).is_ok() && status(599).is_ok());
        assert!(status(99).is_err());
        assert_eq!(status(700).unwrap_err(), "set the status 700; an HTTP status is 100–599");
        assert!(reason("deny", &"r".repeat(REASON_BYTES)).is_ok());
        assert_eq!(reason("retry", &"r".repeat(REASON_BYTES + 1)).unwrap_err(), "gave a retry reason of 1025 bytes, above the limit of 1024");
    }

    #[test]
    fn local_responses() {
        let mut h = vec![("Content-Type".to_string(), "text/plain".to_string())];
        local_response(403, &mut h, "denied").unwrap();
        assert_eq!(h[0].0, "content-type");
        assert_eq!(local_response(199, &mut [], "").unwrap_err(), "answered with status 199; a local response is 200–599");
        assert!(local_response(600, &mut [], "").is_err());
        assert!(local_response(200, &mut [], &"b".repeat(RESPONSE_BODY_BYTES)).is_ok());
        assert!(local_response(200, &mut [], &"b".repeat(RESPONSE_BODY_BYTES + 1)).unwrap_err().contains("a body of 1048577 bytes"));
        let mut many: Vec<(String, String)> = (0..=RESPONSE_HEADERS).map(|i| (format!("h{i}"), String::new())).collect();
        assert!(local_response(200, &mut many, "").unwrap_err().contains("101 headers"));
        let mut big = vec![("a".to_string(), "v".repeat(RESPONSE_HEADER_BYTES))];
        assert!(local_response(200, &mut big, "").unwrap_err().contains("bytes of headers, above the limit of 65536"));
        let mut bad = vec![("x".to_string(), "a\nb".to_string())];
        assert!(local_response(500, &mut bad, "").unwrap_err().contains("not a valid HTTP field value"));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let shown = show(&"é".repeat(100));
        assert_eq!(shown, format!("\"{}\"…", "é".repeat(64)));
    }
}
