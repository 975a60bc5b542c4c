/**
 * Writes a new filter package from a template: package.json (with the `ambit` field the
 * node proxy and `ambit-filter build` read), tsconfig.json, src/filter.ts, a vitest test
 * with its config, .gitignore and a README. Nothing is overwritten: the target folder must be empty or absent.
 */
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEMPLATE_DIR = path.join(ROOT, 'templates');
const OWN_VERSION = (JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The templates, in the order offered, with what each writes. */
export const TEMPLATES = {
  blank: 'the smallest filter: adds one request header, no config',
  policy: 'allow or deny requests by path prefix and method (403/405), with a typed config and counters',
  'header-rewrite': 'set and remove request and response headers from a typed config',
} as const;
export type TemplateName = keyof typeof TEMPLATES;

export function isTemplate(name: string): name is TemplateName {
  return Object.hasOwn(TEMPLATES, name);
}

export interface ScaffoldOptions {
  /** The folder to create (must be empty or absent). */
  dir: string;
  template: TemplateName;
  /** The npm package name; default: the folder's name. */
  name?: string;
  /** The dependency spec of `@ambit/filter-sdk` (default `^<this package's version>`; e.g. `file:../sdk`). */
  sdk?: string;
  /** The dependency spec of `@ambit/runtime`, which `ambit-filter dev` runs (default `^<this package's version>`). */
  runtime?: string;
}

export interface Scaffolded {
  dir: string;
  name: string;
  /** The filter's short name (logs, metrics): the package name without scope and `filter-`. */
  filterName: string;
  /** Files written, relative to `dir`. */
  files: string[];
}

const NPM_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

export class ScaffoldError extends Error {
  override readonly name = 'ScaffoldError';
}

export async function scaffold(options: ScaffoldOptions): Promise<Scaffolded> {
  const dir = path.resolve(options.dir);
  const name = options.name ?? path.basename(dir);
  if (!NPM_NAME.test(name) || name.length > 214) {
    throw new ScaffoldError(`${JSON.stringify(name)} is not a valid npm package name (lower case, digits, - . _ ~, optionally @scope/); pass one with --name`);
  }
  if (!isTemplate(options.template)) {
    throw new ScaffoldError(`unknown template ${JSON.stringify(options.template)}; choose one of: ${Object.keys(TEMPLATES).join(', ')}`);
  }
  if (existsSync(dir) && (await readdir(dir)).length > 0) {
    throw new ScaffoldError(`${dir} exists and is not empty; choose a new folder name`);
  }
  const filterName = name.replace(/^@[^/]+\//, '').replace(/^filter-/, '');
  await mkdir(dir, { recursive: true });
  await cp(path.join(TEMPLATE_DIR, options.template), dir, { recursive: true });
  // Template files carry the names as placeholders.
  const written = await listFiles(dir);
  for (const rel of written) {
    const file = path.join(dir, rel);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replaceAll('__FILTER_NAME__', filterName).replaceAll('__PACKAGE_NAME__', name));
  }
  const hasConfig = (await readFile(path.join(dir, 'src/filter.ts'), 'utf8')).includes('config:');
  const pkg = {
    name,
    version: '0.1.0',
    description: `Ambit filter ${filterName} (${TEMPLATES[options.template]})`,
    type: 'module',
    // What `npm publish` ships: the component, its config schema and manifest — nothing else.
    files: ['dist/filter.wasm', ...(hasConfig ? ['dist/schema.json'] : []), 'dist/manifest.json'],
    ambit: {
      filter: 'dist/filter.wasm',
      ...(hasConfig ? { schema: 'dist/schema.json' } : {}),
      source: 'src/filter.ts',
    },
    scripts: {
      build: 'ambit-filter build .',
      pretest: 'ambit-filter build --if-stale .',
      test: 'vitest run',
      dev: 'ambit-filter dev .',
      prepack: 'ambit-filter build .',
    },
    devDependencies: {
      '@ambit/filter-sdk': options.sdk ?? `^${OWN_VERSION}`,
      '@ambit/runtime': options.runtime ?? `^${OWN_VERSION}`,
      vitest: '^4.1.0',
    },
  };
  await writeFile(path.join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const tsconfig = {
    // Editors' settings; `ambit-filter build` type-checks src/ strictly on its own.
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'],
      strict: true, noEmit: true, skipLibCheck: true, types: [],
    },
    include: ['src', 'test', 'vitest.config.ts'],
  };
  await writeFile(path.join(dir, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);
  await writeFile(path.join(dir, '.gitignore'), 'node_modules/\ndist/\n');
  // Its own vitest config: loading a component takes a moment, and no parent folder's config applies.
  await writeFile(path.join(dir, 'vitest.config.ts'), [
    "import { defineConfig } from 'vitest/config';",
    '',
    "export default defineConfig({ test: { include: ['test/**/*.test.ts'], testTimeout: 30_000 } });",
    '',
  ].join('\n'));
  await writeFile(path.join(dir, 'README.md'), readme(name, filterName, options.template));
  return { dir, name, filterName, files: (await listFiles(dir)).sort() };
}

async function listFiles(dir: string, base = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, base), { withFileTypes: true })) {
    const rel = path.join(base, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out;
}

function readme(name: string, filterName: string, template: TemplateName): string {
  return `# ${name}

An Ambit service-mesh filter written in TypeScript
(${TEMPLATES[template]}), built into a WebAssembly component of the \`ambit:filter\` world.

| command | what it does |
|---|---|
| \`npm test\` | builds \`dist/filter.wasm\` when the source changed, then runs \`test/*.test.ts\` (vitest, the SDK's harness) |
| \`npm run dev\` | runs the filter in a one-node local mesh in front of an echo server, prints the curl to try, rebuilds and reloads on every save |
| \`npm run build\` | \`ambit-filter build .\`: type-check, bundle, componentize → \`dist/filter.wasm\`, \`dist/manifest.json\`${template === 'blank' ? '' : ', `dist/schema.json`'} |
| \`npm publish\` | builds (\`prepack\`) and publishes the component, its schema and manifest |

Bind it in a node proxy's mesh config by package name (installed, or resolved from a registry):

\`\`\`yaml
bindings:
  - name: ${filterName}
    target: { service: reviews.shop }
    direction: outbound
    filters:
      - ref: "${name}@^0.1"
        # sha256: <dist/manifest.json's sha256>   pins exactly this build
\`\`\`

The filter API, the test harness and the error codes: \`node_modules/@ambit/filter-sdk/README.md\`.
`;
}
