// Loads the wasmtime engine addon: a binary built in this checkout (npm/<platform>/,
// by `npm run build`) or the per-platform package installed as an optional dependency.
'use strict';
const { existsSync } = require('node:fs');
const path = require('node:path');

function platformName() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const glibc = typeof process.report?.getReport === 'function' && Boolean(process.report.getReport().header?.glibcVersionRuntime);
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`;
}

const platform = platformName();
const file = `ambit-native.${platform}.node`;
const tried = [];
let binding;
for (const candidate of [path.join(__dirname, 'npm', platform, file), path.join(__dirname, file), `@ambit/native-${platform}`]) {
  if (path.isAbsolute(candidate) && !existsSync(candidate)) {
    tried.push(`${candidate} (missing)`);
    continue;
  }
  try {
    binding = require(candidate);
    break;
  } catch (e) {
    tried.push(`${candidate} (${String(e && e.message).split('\n')[0]})`);
  }
}
if (!binding) {
  throw new Error(`@ambit/native has no binary for ${platform}: build it with cargo (\`npm run build\`); tried ${tried.join('; ')}`);
}
module.exports = binding;
