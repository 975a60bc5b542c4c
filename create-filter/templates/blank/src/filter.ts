import { defineFilter } from '@ambit/filter-sdk';

/**
 * __FILTER_NAME__: adds `x-__FILTER_NAME__` to every request it sees.
 * Handlers: onConnection (L4, before any HTTP), onRequest (request headers),
 * onResponse (response headers; may retry). See @ambit/filter-sdk's README.
 */
export default defineFilter({
  name: '__FILTER_NAME__',

  onRequest(req) {
    req.headers.set('x-__FILTER_NAME__', 'seen');
  },
});
