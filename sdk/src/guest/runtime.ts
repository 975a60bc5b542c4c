/**
 * @internal What the generated component entry imports: binds a filter definition to
 * the `ambit:filter` world. Not for filter authors.
 */
export { bindFilter } from './bind.js';
export { installHost } from './host.js';
