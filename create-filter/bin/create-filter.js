#!/usr/bin/env node
// `npm create @ambit/filter` runs this. Committed (not built) so that npm links the bin
// in a fresh clone before dist/ exists; it runs the compiled CLI, or says how to build it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write(`create-filter: ${fileURLToPath(cli)} is missing; run \`npm run build\` in the repository first\n`);
  process.exit(1);
}
await import(cli.href);
