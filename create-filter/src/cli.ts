/**
 * `npm create @ambit/filter@latest [dir] -- [--template blank|policy|header-rewrite]`
 * (the `create-filter` bin of `@ambit/create-filter`): scaffolds a filter package,
 * installs its dev dependencies and says what to type next.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { isTemplate, scaffold, ScaffoldError, TEMPLATES, type TemplateName } from './scaffold.js';

const USAGE = `usage: npm create @ambit/filter@latest <dir> [-- --template <name>] [--name <npm name>] [--no-install]

  --template <name>   ${Object.entries(TEMPLATES).map(([k, v]) => `${k}: ${v}`).join('\n                      ')}
                      (asked when not given and the terminal is interactive; default blank)
  --name <npm name>   the package name (default: the folder name), e.g. @acme/filter-canary
  --sdk <spec>        the @ambit/filter-sdk dependency (default ^<this version>; e.g. file:../ambit/sdk)
  --runtime <spec>    the @ambit/runtime dependency that \`ambit-filter dev\` runs
  --no-install        write the files only (no npm install)
  -v, --version       print the version
`;

async function askTemplate(): Promise<TemplateName> {
  const names = Object.keys(TEMPLATES) as TemplateName[];
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    names.forEach((n, i) => process.stdout.write(`  ${i + 1}. ${n} — ${TEMPLATES[n]}\n`));
    const answer = (await rl.question(`Template [1-${names.length}, default 1]: `)).trim();
    if (answer === '') return 'blank';
    const picked = names[Number(answer) - 1] ?? answer;
    if (!isTemplate(picked)) throw new ScaffoldError(`no template ${JSON.stringify(answer)}`);
    return picked;
  } finally {
    rl.close();
  }
}

function npmInstall(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['install', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new ScaffoldError(`npm install failed (exit ${code}); fix the cause above and run it again in ${dir}`))));
  });
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      template: { type: 'string', short: 't' },
      name: { type: 'string' },
      sdk: { type: 'string' },
      runtime: { type: 'string' },
      'no-install': { type: 'boolean' },
      version: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return void process.stdout.write(USAGE);
  if (values.version) {
    const own = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    return void process.stdout.write(`${own.version}\n`);
  }
  const target = positionals[0];
  if (!target || positionals.length > 1) throw new ScaffoldError(`give one folder to create\n${USAGE}`);
  let template: TemplateName;
  if (values.template !== undefined) {
    if (!isTemplate(values.template)) throw new ScaffoldError(`unknown template ${JSON.stringify(values.template)}; choose one of: ${Object.keys(TEMPLATES).join(', ')}`);
    template = values.template;
  } else {
    template = process.stdin.isTTY ? await askTemplate() : 'blank';
  }
  const made = await scaffold({ dir: target, template, name: values.name, sdk: values.sdk, runtime: values.runtime });
  const rel = path.relative(process.cwd(), made.dir) || '.';
  process.stdout.write(`Created ${made.name} (template ${template}) in ${rel}: ${made.files.join(', ')}\n`);
  if (!values['no-install']) {
    process.stdout.write('Installing dev dependencies (npm install)…\n');
    await npmInstall(made.dir);
  }
  process.stdout.write(`\nNext:\n  cd ${rel}\n${values['no-install'] ? '  npm install\n' : ''}  npm test       # builds dist/filter.wasm, runs test/filter.test.ts\n  npm run dev    # the filter in a local mesh; prints the curl to try\n`);
}

try {
  await main();
} catch (e) {
  if (!(e instanceof ScaffoldError) && !(e instanceof TypeError && 'code' in e)) throw e;
  process.stderr.write(`create-filter: ${e.message}\n`);
  process.exitCode = 1;
}
