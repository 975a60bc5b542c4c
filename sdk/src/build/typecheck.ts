import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The type declarations of this SDK's filter author API (`dist/index.d.ts`). */
const SDK_TYPES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../index.d.ts');

/**
 * Runs the TypeScript checker over a filter's source; returns formatted errors (empty when clean).
 *
 * `@ambit/filter-sdk` is checked against the types of the SDK running the build, the
 * same SDK the bundler puts into the component (see the esbuild alias in build.ts),
 * whether or not (and in whatever version) the filter package has it installed.
 */
export async function typecheck(entry: string, root: string): Promise<{ errors: string[]; program: import('typescript').Program; ts: typeof import('typescript') }> {
  const ts = (await import('typescript')).default;
  const options: import('typescript').CompilerOptions = {
    paths: { '@ambit/filter-sdk': [SDK_TYPES] },
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts'],
    types: [],
    skipLibCheck: true,
    allowImportingTsExtensions: true,
  };
  const program = ts.createProgram([entry], options);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  const errors = diagnostics
    .filter((d) => d.category === ts.DiagnosticCategory.Error)
    .map((d) => {
      const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      if (!d.file || d.start === undefined) return `error TS${d.code}: ${message}`;
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      const rel = path.relative(root, d.file.fileName);
      const text = d.file.text.split('\n')[line] ?? '';
      return `${rel}:${line + 1}:${character + 1} - error TS${d.code}: ${message}\n    ${text.trimEnd()}\n    ${' '.repeat(character)}^`;
    });
  return { errors, program, ts };
}
