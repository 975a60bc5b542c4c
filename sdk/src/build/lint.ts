import path from 'node:path';
import type ts from 'typescript';
import type { Capability } from '../abi/types.js';

/** A use of the host that needs a capability. */
export interface CapabilityUse {
  capability: Capability;
  /** What the source wrote, e.g. `clock.now`, `Date.now()`. */
  what: string;
  /** `file:line:column` relative to the package. */
  at: string;
  line: string;
}

/** SDK exports that reach the host, by the capability they need (members of `traffic` listed one by one). */
const SDK_EXPORTS: Record<string, Capability> = { log: 'log', counter: 'counters', clock: 'clock', random: 'random', shared: 'shared' };
const TRAFFIC_MEMBERS = new Set(['delay', 'routeToSubset', 'setPerTryTimeout']);

/**
 * Finds, in the filter's own sources, every use of the host that needs a capability:
 * the SDK's `log`, `counter`, `clock`, `random`, `shared` and `traffic` directives, and
 * JavaScript's clocks (`Date.now()`, `new Date()`), which read the host's clock.
 */
export function findCapabilityUses(program: ts.Program, tsApi: typeof ts, root: string): CapabilityUse[] {
  const checker = program.getTypeChecker();
  const uses: CapabilityUse[] = [];
  const fromSdk = (sym: ts.Symbol | undefined): string | undefined => {
    if (!sym) return undefined;
    const target = sym.flags & tsApi.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
    const decl = target.declarations?.[0];
    if (!decl) return undefined;
    const file = decl.getSourceFile().fileName.split(path.sep).join('/');
    return /\/guest\/host\.d\.ts$|\/guest\/host\.ts$/.test(file) ? target.name : undefined;
  };
  const isGlobalDate = (node: ts.Expression): boolean => {
    if (!tsApi.isIdentifier(node) || node.text !== 'Date') return false;
    const decl = checker.getSymbolAtLocation(node)?.declarations?.[0];
    return decl !== undefined && program.isSourceFileDefaultLibrary(decl.getSourceFile());
  };
  for (const sf of program.getSourceFiles()) {
    if (sf.isDeclarationFile || program.isSourceFileDefaultLibrary(sf)) continue;
    const rel = path.relative(root, sf.fileName);
    if (rel.startsWith('..') || rel.split(path.sep).includes('node_modules')) continue;
    const record = (node: ts.Node, capability: Capability, what: string) => {
      const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      uses.push({ capability, what, at: `${rel}:${line + 1}:${character + 1}`, line: (sf.text.split('\n')[line] ?? '').trimEnd() });
    };
    const visit = (node: ts.Node): void => {
      if (tsApi.isPropertyAccessExpression(node)) {
        const owner = tsApi.isIdentifier(node.expression) ? fromSdk(checker.getSymbolAtLocation(node.expression)) : undefined;
        if (owner && owner in SDK_EXPORTS) record(node, SDK_EXPORTS[owner]!, `${owner}.${node.name.text}`);
        else if (owner === 'traffic' && TRAFFIC_MEMBERS.has(node.name.text)) record(node, 'traffic', `traffic.${node.name.text}`);
        else if (node.name.text === 'now' && isGlobalDate(node.expression)) record(node, 'clock', 'Date.now()');
      } else if (tsApi.isCallExpression(node) && tsApi.isIdentifier(node.expression)) {
        const fn = fromSdk(checker.getSymbolAtLocation(node.expression));
        if (fn === 'counter' || fn === 'random') record(node, SDK_EXPORTS[fn]!, `${fn}()`);
      } else if (tsApi.isNewExpression(node) && isGlobalDate(node.expression) && (node.arguments?.length ?? 0) === 0) {
        record(node, 'clock', 'new Date()');
      }
      tsApi.forEachChild(node, visit);
    };
    visit(sf);
  }
  return uses;
}

/** The build's error lines for uses of capabilities the filter does not declare. */
export function undeclaredUses(uses: CapabilityUse[], declared: readonly Capability[]): string[] {
  return uses
    .filter((u) => !declared.includes(u.capability))
    .map((u) => {
      const why = u.what.startsWith('Date') || u.what.startsWith('new Date')
        ? `${u.what} reads the host's clock`
        : `${u.what} uses the host`;
      return `${u.at} - ${why}, which needs the "${u.capability}" capability; the filter does not declare it: add '${u.capability}' to capabilities in defineFilter({ ... }) (or "ambit": { "capabilities" } in package.json)\n    ${u.line}`;
    });
}
