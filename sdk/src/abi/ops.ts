import type { HeaderOp, Headers, RequestHead, ResponseHead } from './types.js';

/**
 * Applies header operations to a header list in place. Pseudo-headers are not
 * stored in the list: callers route them with {@link applyRequestOps} /
 * {@link applyResponseOps}.
 */
export function applyHeaderOps(headers: Headers, ops: readonly HeaderOp[]): void {
  for (const op of ops) applyHeaderOp(headers, op);
}

export function applyHeaderOp(headers: Headers, op: HeaderOp): void {
  if (op.tag === 'append') {
    headers.push([op.val[0], op.val[1]]);
    return;
  }
  const name = op.tag === 'remove' ? op.val : op.val[0];
  let w = 0;
  for (let r = 0; r < headers.length; r++) {
    const h = headers[r]!;
    if (h[0] !== name) headers[w++] = h;
  }
  headers.length = w;
  if (op.tag === 'set') headers.push([name, op.val[1]]);
}

/** Applies operations to a request head in place, including `:method`, `:path`, `:authority`. */
export function applyRequestOps(req: RequestHead, ops: readonly HeaderOp[]): void {
  for (const op of ops) {
    if (op.tag === 'set' && op.val[0].charCodeAt(0) === 58 /* ':' */) {
      const [name, value] = op.val;
      if (name === ':path') req.path = value;
      else if (name === ':method') req.method = value;
      else if (name === ':authority') req.authority = value;
      else if (name === ':scheme') req.scheme = value;
      continue;
    }
    applyHeaderOp(req.headers, op);
  }
}

/** Applies operations to a response head in place, including `:status`. */
export function applyResponseOps(res: ResponseHead, ops: readonly HeaderOp[]): void {
  for (const op of ops) {
    if (op.tag === 'set' && op.val[0] === ':status') {
      const status = Number(op.val[1]);
      if (Number.isInteger(status) && status >= 100 && status <= 599) res.status = status;
      continue;
    }
    applyHeaderOp(res.headers, op);
  }
}
