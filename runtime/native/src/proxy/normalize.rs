//! What a request looks like before filters see it, so that a policy on `/admin` cannot be
//! walked around by spelling: the path is normalised (RFC 3986 §6.2.2: percent-encoded
//! unreserved characters decoded, other escapes in upper case; §5.2.4: dot segments
//! removed; runs of `/` merged), and the authority is one value (absolute-form targets
//! become origin-form with their authority as Host; a second Host is refused).

/// Why a request target was refused (answered 400).
#[derive(Debug, PartialEq, Eq)]
pub struct BadTarget(pub &'static str);

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises an origin-form target (`/path?query`); `*` (OPTIONS) passes as is.
pub fn normalize_target(target: &str) -> Result<String, BadTarget> {
    if target == "*" {
        return Ok(target.to_string());
    }
    if !target.starts_with('/') {
        return Err(BadTarget("the request target is not origin-form (it must start with /)"));
    }
    let (path, query) = match target.find('?') {
        Some(i) => (&target[..i], Some(&target[i..])),
        None => (target, None),
    };
    // 1. Percent-encoding: decode unreserved characters, upper-case the rest.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) else {
                return Err(BadTarget("the path has a malformed percent-encoding"));
            };
            let c = h * 16 + l;
            if unreserved(c) {
                decoded.push(c as char);
            } else {
                decoded.push('%');
                decoded.push(char::from(b"0123456789ABCDEF"[(c >> 4) as usize]));
                decoded.push(char::from(b"0123456789ABCDEF"[(c & 15) as usize]));
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b < 0x21 || b >= 0x7f {
            return Err(BadTarget("the path has a character that must be percent-encoded"));
        }
        decoded.push(b as char);
        i += 1;
    }
    // 2 + 3. Merge slashes and remove dot segments, segment by segment.
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut norm = String::with_capacity(decoded.len() + query.map_or(0, str::len));
    for s in &out {
        norm.push('/');
        norm.push_str(s);
    }
    if out.is_empty() || trailing {
        norm.push('/');
    }
    if let Some(q) = query {
        norm.push_str(q);
    }
    Ok(norm)
}

/// A Host / :authority value: `host[:port]` with a reg-name, IPv4 or bracketed IPv6 host.
pub fn valid_authority(a: &str) -> bool {
    !a.is_empty() && a.len() <= 255 && a.parse::<http::uri::Authority>().is_ok_and(|p| !p.as_str().contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_percent_encoding_and_slashes() {
        for (input, want) in [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("//admin///x", "/admin/x"),
            ("/a/b/../../..//admin/", "/admin/"),
            ("/a/%2f/b", "/a/%2F/b"),
            ("/a/.", "/a/"),
            ("/a?x=/../y", "/a?x=/../y"),
            ("/%7Euser", "/~user"),
        ] {
            assert_eq!(normalize_target(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn bad_targets() {
        assert!(normalize_target("admin").is_err());
        assert!(normalize_target("/a%zz").is_err());
        assert!(normalize_target("/a%2").is_err());
        assert!(normalize_target("/a\\..\\admin").is_err());
    }

    #[test]
    fn authorities() {
        assert!(valid_authority("svc.ns:80"));
        assert!(valid_authority("[::1]:8080"));
        assert!(!valid_authority("user@host"));
        assert!(!valid_authority(""));
        assert!(!valid_authority("a b"));
    }
}
