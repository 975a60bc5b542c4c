/**
 * Adapts a component's `handler` export (phases over borrowed resources) to the host's
 * data view ({@link Handler}): lends the phase's resources, collects the header
 * operations the filter made, checks what it returns, and ends the loans when the call
 * returns or traps.
 */
import type {
  ComponentHandler, ConfigureResult, Connection, ConnectionAction, Context, RequestAction, RequestHead, Handler, ResponseAction, ResponseHead,
} from '../abi/types.js';
import { checkConnectionAction, checkLocalResponse, checkRetry } from './output.js';
import { HostContext, HostRequestHead, HostResponseHead } from './resources.js';

export function bindComponent(component: ComponentHandler, filter: string): Handler {
  return {
    configure(config: string): ConfigureResult {
      return component.configure(config);
    },

    onConnection(conn: Connection): ConnectionAction {
      const ctx = HostContext.of(conn);
      try {
        return checkConnectionAction(filter, component.onConnection(ctx));
      } finally {
        ctx.close();
      }
    },

    onRequestHeaders(facts: Context, request: RequestHead): RequestAction {
      const ctx = new HostContext(facts);
      const req = new HostRequestHead(filter, request, 'request');
      try {
        const a = component.onRequestHeaders(ctx, req);
        if (a.tag === 'respond') return { tag: 'respond', val: checkLocalResponse(filter, a.val) };
        return { tag: 'proceed', val: req.ops };
      } finally {
        ctx.close();
        req.close();
      }
    },

    onResponseHeaders(facts: Context, request: RequestHead, response: ResponseHead): ResponseAction {
      const ctx = new HostContext(facts);
      const req = new HostRequestHead(filter, request, 'response');
      const res = new HostResponseHead(filter, response);
      try {
        const a = component.onResponseHeaders(ctx, req, res);
        switch (a.tag) {
          case 'respond': return { tag: 'respond', val: checkLocalResponse(filter, a.val) };
          case 'retry': return { tag: 'retry', val: checkRetry(filter, a.val) };
          default: return { tag: 'proceed', val: res.ops };
        }
      } finally {
        ctx.close();
        req.close();
        res.close();
      }
    },
  };
}
