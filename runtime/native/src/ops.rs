//! Header operations applied to a request or response head, so each filter of a chain
//! sees the changes of the filters before it. Same rules as the SDK's `abi/ops.ts`:
//! `set` replaces every value, `append` adds one, `remove` drops every value;
//! `:method`, `:path`, `:authority`, `:scheme` (requests) and `:status` (responses)
//! rewrite those fields instead of the header list.

use crate::wire::{HeaderList, HeaderOp, RequestHead, ResponseHead};

fn apply_header_op(headers: &mut HeaderList, op: &HeaderOp) {
    match op {
        HeaderOp::Append((k, v)) => headers.push((k.clone(), v.clone())),
        HeaderOp::Set((k, v)) => {
            headers.retain(|(name, _)| name != k);
            headers.push((k.clone(), v.clone()));
        }
        HeaderOp::Remove(k) => headers.retain(|(name, _)| name != k),
    }
}

pub fn apply_request_ops(req: &mut RequestHead, ops: &[HeaderOp]) {
    for op in ops {
        if let HeaderOp::Set((name, value)) = op {
            if name.starts_with(':') {
                match name.as_str() {
                    ":path" => req.path = value.clone(),
                    ":method" => req.method = value.clone(),
                    ":authority" => req.authority = value.clone(),
                    ":scheme" => req.scheme = value.clone(),
                    _ => {}
                }
                continue;
            }
        }
        apply_header_op(&mut req.headers, op);
    }
}

pub fn apply_response_ops(res: &mut ResponseHead, ops: &[HeaderOp]) {
    for op in ops {
        if let HeaderOp::Set((name, value)) = op {
            if name == ":status" {
                if let Ok(status) = value.parse::<u16>() {
                    if (100..=599).contains(&status) {
                        res.status = status;
                    }
                }
                continue;
            }
        }
        apply_header_op(&mut res.headers, op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RequestHead {
        RequestHead {
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/".into(),
            headers: vec![("x".into(), "1".into()), ("x".into(), "2".into()), ("y".into(), "3".into())],
        }
    }

    #[test]
    fn set_replaces_every_value_and_pseudo_headers_rewrite_fields() {
        let mut r = req();
        apply_request_ops(&mut r, &[HeaderOp::Set(("x".into(), "9".into())), HeaderOp::Set((":path".into(), "/v2".into()))]);
        assert_eq!(r.headers, vec![("y".to_string(), "3".to_string()), ("x".to_string(), "9".to_string())]);
        assert_eq!(r.path, "/v2");
    }

    #[test]
    fn remove_and_append() {
        let mut r = req();
        apply_request_ops(&mut r, &[HeaderOp::Remove("x".into()), HeaderOp::Append(("y".into(), "4".into()))]);
        assert_eq!(r.headers, vec![("y".to_string(), "3".to_string()), ("y".to_string(), "4".to_string())]);
    }

    #[test]
    fn status_is_rewritten_only_when_valid() {
        let mut r = ResponseHead { status: 200, headers: vec![] };
        apply_response_ops(&mut r, &[HeaderOp::Set((":status".into(), "99".into()))]);
        assert_eq!(r.status, 200);
        apply_response_ops(&mut r, &[HeaderOp::Set((":status".into(), "418".into()))]);
        assert_eq!(r.status, 418);
    }
}
