/**
 * What a filter may hand back to the host. Everything a filter writes (a header, the
 * path, a status, a local response, a reason) is checked here before it leaves the
 * host: a value that is not valid HTTP (RFC 9110) or is larger than these limits fails
 * the call with `AMBIT_ERR_FILTER_OUTPUT`, which the proxy answers per the binding's
 * failure policy. Nothing invalid reaches a client or an upstream.
 */
import { AmbitError } from './errors.js';
import type { ConnectionAction, LocalResponse, RetryRequest } from '../abi/types.js';

/** Limits on a filter's output, per call. */
export const OUTPUT_LIMITS = {
  /** Bytes of header names and values one call may add to a head (`set`, `append`). */
  addedHeaderBytes: 64 * 1024,
  /** Header entries one call may add to a head. */
  addedHeaders: 100,
  /** Bytes of a path (with its query) a filter may set. */
  pathBytes: 8 * 1024,
  /** Bytes of an authority a filter may set. */
  authorityBytes: 1024,
  /** Bytes of a method a filter may set. */
  methodBytes: 64,
  /** Header entries of a local response. */
  responseHeaders: 100,
  /** Bytes of header names and values of a local response. */
  responseHeaderBytes: 64 * 1024,
  /** Bytes (UTF-8) of a local response's body. */
  responseBodyBytes: 1024 * 1024,
  /** Bytes (UTF-8) of a deny or retry reason. */
  reasonBytes: 1024,
} as const;

/** `token` of RFC 9110 §5.6.2: a field name or a method. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * `field-value` of RFC 9110 §5.5: visible ASCII, space, tab and obs-text; no CR, LF, NUL or
 * other control character. Values go on the wire as UTF-8, whose bytes beyond ASCII are
 * all obs-text, so any character from U+0080 up is allowed.
 */
const FIELD_VALUE = /^[\t\x20-\x7e\u0080-\uffff]*$/;
/** An origin-form target: `/`, then visible ASCII or obs-text as UTF-8 (no space, no control character). */
const ORIGIN_FORM = /^\/[\x21-\x7e\u0080-\uffff]*$/;
/** `authority` of RFC 3986 without userinfo: host (reg-name, IPv4, or an IP literal in brackets) and port. */
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=%[\]:]+$/;

function invalid(filter: string, what: string): AmbitError {
  return new AmbitError('AMBIT_ERR_FILTER_OUTPUT', `filter ${filter} ${what}`);
}

function show(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

/** A header name as the host stores it (lower-case), or a failure naming what is wrong. */
export function checkHeaderName(filter: string, name: string): string {
  if (!TOKEN.test(name)) {
    throw invalid(filter, `used the header name ${show(name)}, which is not a valid HTTP field name (RFC 9110 token: letters, digits and !#$%&'*+-.^_\`|~); pseudo-headers are set with set-method, set-path, set-authority and set-status`);
  }
  return name.toLowerCase();
}

export function checkHeaderValue(filter: string, name: string, value: string): void {
  if (!FIELD_VALUE.test(value)) {
    throw invalid(filter, `set the header ${name} to ${show(value)}, which is not a valid HTTP field value (no CR, LF, NUL or other control characters)`);
  }
}

export function checkMethod(filter: string, value: string): void {
  if (value.length > OUTPUT_LIMITS.methodBytes || !TOKEN.test(value)) throw invalid(filter, `set the method to ${show(value)}, which is not an HTTP method (RFC 9110 token)`);
}

export function checkPath(filter: string, value: string): void {
  if (!ORIGIN_FORM.test(value)) throw invalid(filter, `set the path to ${show(value)}; a path starts with "/" and has no spaces or control characters`);
  if (value.length > OUTPUT_LIMITS.pathBytes) throw invalid(filter, `set a path of ${value.length} bytes, above the limit of ${OUTPUT_LIMITS.pathBytes}`);
}

export function checkAuthority(filter: string, value: string): void {
  if (value.length > OUTPUT_LIMITS.authorityBytes || !AUTHORITY.test(value)) {
    throw invalid(filter, `set the authority to ${show(value)}, which is not host[:port] (RFC 3986, at most ${OUTPUT_LIMITS.authorityBytes} bytes)`);
  }
}

/** A response status a filter sets on a forwarded response: 100–599. */
export function checkStatus(filter: string, status: number): void {
  if (!Number.isInteger(status) || status < 100 || status > 599) throw invalid(filter, `set the status ${status}; an HTTP status is 100–599`);
}

function checkReason(filter: string, what: string, reason: string): void {
  if (Buffer.byteLength(reason) > OUTPUT_LIMITS.reasonBytes) throw invalid(filter, `gave a ${what} reason of ${Buffer.byteLength(reason)} bytes, above the limit of ${OUTPUT_LIMITS.reasonBytes}`);
}

/**
 * A local response, checked: status 200–599, valid header names and values, within the
 * size limits. Header names come back lower-case.
 */
export function checkLocalResponse(filter: string, r: LocalResponse): LocalResponse {
  if (!Number.isInteger(r.status) || r.status < 200 || r.status > 599) throw invalid(filter, `answered with status ${r.status}; a local response is 200–599`);
  if (r.headers.length > OUTPUT_LIMITS.responseHeaders) {
    throw invalid(filter, `answered with ${r.headers.length} headers, above the limit of ${OUTPUT_LIMITS.responseHeaders}`);
  }
  let bytes = 0;
  const headers: LocalResponse['headers'] = [];
  for (const [name, value] of r.headers) {
    const n = checkHeaderName(filter, name);
    checkHeaderValue(filter, n, value);
    bytes += n.length + value.length;
    headers.push([n, value]);
  }
  if (bytes > OUTPUT_LIMITS.responseHeaderBytes) throw invalid(filter, `answered with ${bytes} bytes of headers, above the limit of ${OUTPUT_LIMITS.responseHeaderBytes}`);
  const body = Buffer.byteLength(r.body);
  if (body > OUTPUT_LIMITS.responseBodyBytes) throw invalid(filter, `answered with a body of ${body} bytes, above the limit of ${OUTPUT_LIMITS.responseBodyBytes}`);
  return { status: r.status, headers, body: r.body };
}

export function checkConnectionAction(filter: string, a: ConnectionAction): ConnectionAction {
  if (a.tag === 'deny') checkReason(filter, 'deny', a.val);
  return a;
}

export function checkRetry(filter: string, r: RetryRequest): RetryRequest {
  checkReason(filter, 'retry', r.reason);
  return r;
}
