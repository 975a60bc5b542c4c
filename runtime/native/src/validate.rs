//! Checks on what a filter hands back before it can reach the wire: header names and
//! values (RFC 9110), the request's method, path, authority and scheme, statuses, and
//! the size of local responses. Anything that fails is the filter's fault: the call
//! traps with the message returned here, and the binding's failure policy answers.

/// Longest header name a filter may write.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest header value (or path, or authority) a filter may write.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Headers one filter call may add (`set` and `append` together).
pub const MAX_ADDED_PER_CALL: u32 = 256;
/// Headers of a local response.
pub const MAX_LOCAL_HEADERS: usize = 256;
/// Body of a local response.
pub const MAX_LOCAL_BODY_BYTES: usize = 1024 * 1024;

/// At most this much of a bad name or value is quoted in a message.
const QUOTE_BYTES: usize = 64;

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A short, escaped quote of what the filter wrote, for messages.
pub fn quote(s: &str) -> String {
    let mut end = s.len().min(QUOTE_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() { format!("{:?}…", &s[..end]) } else { format!("{s:?}") }
}

/// A field name: a non-empty token (RFC 9110 §5.1).
pub fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a header name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("header name {} is {} bytes, more than {MAX_NAME_BYTES}", quote(name), name.len()));
    }
    if let Some(at) = name.bytes().position(|b| !is_tchar(b)) {
        return Err(format!(
            "header name {} is not a token (RFC 9110 §5.1): byte 0x{:02x} at {at}",
            quote(name),
            name.as_bytes()[at]
        ));
    }
    Ok(())
}

/// A field value: visible characters, spaces, tabs and obs-text; no CR, LF, NUL or other
/// control characters (RFC 9110 §5.5).
pub fn header_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("the value of header {} is {} bytes, more than {MAX_VALUE_BYTES}", quote(name), value.len()));
    }
    if let Some(at) = value.bytes().position(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "the value of header {} has control character 0x{:02x} at {at} (CR, LF, NUL and other controls are not allowed in a field value)",
            quote(name),
            value.as_bytes()[at]
        ));
    }
    Ok(())
}

/// A method: a token.
pub fn method(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES || !value.bytes().all(is_tchar) {
        return Err(format!("method {} is not a token (RFC 9110 §9.1)", quote(value)));
    }
    Ok(())
}

fn has_space_or_control(value: &str) -> Option<(usize, u8)> {
    value.bytes().enumerate().find(|&(_, b)| b <= 0x20 || b == 0x7f)
}

/// A path (with its query): origin-form starting with `/`, or `*`; no spaces or controls.
pub fn path(value: &str) -> Result<(), String> {
    if !(value.starts_with('/') || value == "*") {
        return Err(format!("path {} must start with \"/\" (or be \"*\")", quote(value)));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("path is {} bytes, more than {MAX_VALUE_BYTES}", value.len()));
    }
    if let Some((at, b)) = has_space_or_control(value) {
        return Err(format!("path {} has byte 0x{b:02x} at {at} (no spaces or control characters)", quote(value)));
    }
    Ok(())
}

/// An authority: host and optional port, no userinfo (RFC 9113 §8.3.1), no spaces or controls.
pub fn authority(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("authority is empty".into());
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("authority is {} bytes, more than {MAX_NAME_BYTES}", value.len()));
    }
    if let Some((at, b)) = has_space_or_control(value) {
        return Err(format!("authority {} has byte 0x{b:02x} at {at} (no spaces or control characters)", quote(value)));
    }
    if let Some(at) = value.bytes().position(|b| b"/?#@\\".contains(&b)) {
        return Err(format!("authority {} has {:?} at {at}: only host[:port] is allowed", quote(value), value.as_bytes()[at] as char));
    }
    Ok(())
}

/// A scheme: `http` or `https`.
pub fn scheme(value: &str) -> Result<(), String> {
    match value {
        "http" | "https" => Ok(()),
        _ => Err(format!("scheme {} must be \"http\" or \"https\"", quote(value))),
    }
}

/// A status a filter sets on a forwarded response: 100–599.
pub fn status(value: u16) -> Result<(), String> {
    if (100..=599).contains(&value) { Ok(()) } else { Err(format!("status {value} is outside 100–599")) }
}

/// A local response: status 200–599, at most `MAX_LOCAL_HEADERS` valid headers (names
/// lower-cased here), a body of at most `MAX_LOCAL_BODY_BYTES`.
pub fn local_response(status: u16, headers: &mut [(String, String)], body: &str) -> Result<(), String> {
    if !(200..=599).contains(&status) {
        return Err(format!("local response status {status} is outside 200–599"));
    }
    if headers.len() > MAX_LOCAL_HEADERS {
        return Err(format!("local response has {} headers, more than {MAX_LOCAL_HEADERS}", headers.len()));
    }
    if body.len() > MAX_LOCAL_BODY_BYTES {
        return Err(format!("local response body is {} bytes, more than {MAX_LOCAL_BODY_BYTES}", body.len()));
    }
    for (name, value) in headers.iter_mut() {
        header_name(name).map_err(|m| format!("local response: {m}"))?;
        header_value(name, value).map_err(|m| format!("local response: {m}"))?;
        name.make_ascii_lowercase();
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
        assert!(header_name("").unwrap_err().contains("empty"));
        let e = header_name("bad name").unwrap_err();
        assert!(e.contains("not a token") && e.contains("0x20 at 3"), "{e}");
        assert!(header_name(":path").unwrap_err().contains("0x3a at 0"));
        assert!(header_name("x\r\ny").is_err());
        assert!(header_name("é").is_err());
        assert!(header_name(&"a".repeat(MAX_NAME_BYTES + 1)).unwrap_err().contains("more than 1024"));
    }

    #[test]
    fn values_refuse_cr_lf_nul_and_controls() {
        assert!(header_value("x", "a b\tc ünï").is_ok());
        assert!(header_value("x", "").is_ok());
        for bad in ["a\rb", "a\nb", "a\0b", "a\x01b", "a\x7fb"] {
            let e = header_value("x", bad).unwrap_err();
            assert!(e.contains("control character"), "{e}");
        }
        assert!(header_value("x", "evil\r\nset-cookie: a=b").unwrap_err().contains("0x0d at 4"));
        assert!(header_value("x", &"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(header_value("x", &"v".repeat(MAX_VALUE_BYTES + 1)).unwrap_err().contains("more than 65536"));
    }

    #[test]
    fn request_fields() {
        assert!(method("GET").is_ok() && method("PROPFIND").is_ok());
        assert!(method("GE T").is_err() && method("").is_err());
        assert!(path("/a?b=c").is_ok() && path("*").is_ok());
        assert!(path("a").unwrap_err().contains("must start with"));
        assert!(path("/a b").unwrap_err().contains("0x20"));
        assert!(path("/a\r\n").is_err());
        assert!(authority("reviews.default:9080").is_ok() && authority("[::1]:80").is_ok());
        assert!(authority("user@host").unwrap_err().contains("'@'"));
        assert!(authority("host/x").is_err() && authority("").is_err() && authority("a b").is_err());
        assert!(scheme("https").is_ok() && scheme("ftp").is_err());
    }

    #[test]
    fn statuses() {
        assert!(status(100).is_ok() && status(599).is_ok());
        assert!(status(99).is_err() && status(600).unwrap_err().contains("600"));
    }

    #[test]
    fn local_responses() {
        let mut h = vec![("Content-Type".to_string(), "text/plain".to_string())];
        local_response(403, &mut h, "denied").unwrap();
        assert_eq!(h[0].0, "content-type");
        assert!(local_response(199, &mut [], "").unwrap_err().contains("199"));
        assert!(local_response(600, &mut [], "").is_err());
        assert!(local_response(200, &mut [], &"b".repeat(MAX_LOCAL_BODY_BYTES + 1)).unwrap_err().contains("body"));
        let mut many: Vec<(String, String)> = (0..=MAX_LOCAL_HEADERS).map(|i| (format!("h{i}"), String::new())).collect();
        assert!(local_response(200, &mut many, "").unwrap_err().contains("257 headers"));
        let mut bad = vec![("x".to_string(), "a\nb".to_string())];
        assert!(local_response(500, &mut bad, "").unwrap_err().starts_with("local response: "));
    }
}
