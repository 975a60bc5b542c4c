export * from './server.js';
export * from './cluster.js';
