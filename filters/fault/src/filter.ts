import { Type, counter, defineFilter, random, respond, traffic } from '@ambit/filter-sdk';
import type { HttpRequest } from '@ambit/filter-sdk';

/**
 * Fault injection, with the semantics of Istio's VirtualService `fault` and Envoy's
 * fault filter: delay some requests and abort some, chosen by percentage, to test how
 * callers cope.
 *
 * - `delay`: `{ percentage, fixedDelayMs }` — the proxy holds the request before
 *   forwarding it.
 * - `abort`: `{ percentage, httpStatus | grpcStatus, body? }` — the request is answered
 *   locally and never reaches the upstream. A gRPC abort answers HTTP 200 with
 *   `grpc-status` (a trailers-only response).
 * - `match`: only requests with every listed header (`{ name: value }`; an empty value
 *   matches any value) are eligible; without it every request is.
 * Both draw independently (a request can be delayed and then aborted, as in Envoy).
 * Injected faults carry `x-ambit-fault: delay|abort` on the upstream request or the
 * local answer, and are counted (`delays_injected`, `aborts_injected`).
 */

interface Config {
  delay?: { percentage: number; fixedDelayMs: number };
  abort?: { percentage: number; httpStatus?: number; grpcStatus?: number; body?: string };
  match: Record<string, string>;
}

const Percentage = Type.Number({ minimum: 0, maximum: 100, description: 'Share of eligible requests, 0–100 (fractions allowed).' });

function matches(req: HttpRequest, match: Record<string, string>): boolean {
  for (const [name, want] of Object.entries(match)) {
    const got = req.headers.get(name);
    if (got === undefined) return false;
    if (want !== '' && got !== want) return false;
  }
  return true;
}

/** A draw of `percentage` out of 100. */
const hit = (percentage: number): boolean => percentage >= 100 || (percentage > 0 && random() * 100 < percentage);

export default defineFilter({
  name: 'fault',
  capabilities: ['random', 'traffic', 'counters'],
  config: Type.Object(
    {
      delay: Type.Optional(Type.Object(
        { percentage: Percentage, fixedDelayMs: Type.Integer({ minimum: 1, maximum: 60_000, description: 'How long to hold the request.' }) },
        { additionalProperties: false },
      )),
      abort: Type.Optional(Type.Object(
        {
          percentage: Percentage,
          httpStatus: Type.Optional(Type.Integer({ minimum: 200, maximum: 599, description: 'Status of the local answer.' })),
          grpcStatus: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, description: 'gRPC status (for gRPC requests), instead of httpStatus.' })),
          body: Type.Optional(Type.String({ maxLength: 4096, description: 'Body of the local answer. Default: `fault filter abort`.' })),
        },
        { additionalProperties: false },
      )),
      match: Type.Record(Type.String(), Type.String(), { default: {}, description: 'Headers a request must carry to be eligible (empty value: any).' }),
    },
    { additionalProperties: false },
  ),

  setup(config: Config) {
    if (!config.delay && !config.abort) throw new Error('configure a delay, an abort or both');
    if (config.abort && (config.abort.httpStatus === undefined) === (config.abort.grpcStatus === undefined)) {
      throw new Error('abort: give exactly one of httpStatus and grpcStatus');
    }
  },

  onRequest(req, ctx) {
    const { delay, abort, match } = ctx.config;
    if (!matches(req, match)) return;
    if (delay && hit(delay.percentage)) {
      traffic.delay(delay.fixedDelayMs);
      req.headers.set('x-ambit-fault', 'delay');
      counter('delays_injected');
    }
    if (abort && hit(abort.percentage)) {
      counter('aborts_injected');
      if (abort.grpcStatus !== undefined) {
        return respond(200, '', {
          'content-type': 'application/grpc', 'grpc-status': String(abort.grpcStatus),
          'grpc-message': abort.body ?? 'fault filter abort', 'x-ambit-fault': 'abort',
        });
      }
      return respond(abort.httpStatus!, abort.body ?? 'fault filter abort\n', { 'content-type': 'text/plain', 'x-ambit-fault': 'abort' });
    }
  },
});
