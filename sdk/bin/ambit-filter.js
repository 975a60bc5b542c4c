#!/usr/bin/env node
// The `ambit-filter` command. This file is committed (not built) so that npm links the
// bin at install time even in a fresh clone whose dist/ is built later; it runs the
// compiled CLI, or says how to build it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/build/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write(`ambit-filter: error AMBIT_ERR_BUILD: the SDK is not built (${fileURLToPath(cli)} is missing); run \`npm run build\` in the repository first\n`);
  process.exit(1);
}
await import(cli.href);
