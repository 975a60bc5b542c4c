// Preloaded with `node -r`: makes `@ambit/native` fail to load, as on a machine where it
// was not built, so the engine choice can be tested in a child process.
const Module = require('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === '@ambit/native') throw new Error('Cannot find module \'@ambit/native\' (blocked by the test)');
  return resolve.call(this, request, ...rest);
};
