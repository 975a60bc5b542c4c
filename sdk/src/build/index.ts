export { buildFilter, WIT_DIR, type BuildOptions, type BuildResult, type GuestEngine } from './build.js';
export { buildStaleness } from './stale.js';
export { withCustomSection } from './custom-section.js';
