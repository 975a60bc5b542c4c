/**
 * `ambit validate --config mesh.yaml`: everything `ambit run` checks before it listens —
 * the YAML, the schema, references between services, workloads and bindings, every
 * filter ref resolved and integrity-checked, and each binding's config against its
 * filter's schema — without opening a socket or starting an engine.
 */
import { formatIssue, loadMeshConfig, resolveFilters } from '../config/index.js';
import { AmbitError, errorMessage } from '../deps.js';

/** Prints what was checked through `out` (problems, each with its code, and warnings through `err`); true when the config is valid. */
export async function validateConfigFile(file: string, out: (line: string) => void, err: (line: string) => void = out): Promise<boolean> {
  try {
    const loaded = await loadMeshConfig(file);
    const resolved = await resolveFilters(loaded);
    for (const w of loaded.warnings) err(`warning: ${formatIssue(w)}`);
    const { config } = loaded;
    const filters = [...resolved.filters.values()];
    out(`${file}: valid — node ${config.node}, ${config.services.length} service(s), ${config.workloads.length} workload(s), ${config.bindings.length} binding(s), ${filters.length} filter(s)`);
    for (const f of filters) out(`  ${f.id}: ${f.binding.name} sha256 ${f.artifact.sha256} (${f.location})`);
    return true;
  } catch (e) {
    if (!(e instanceof AmbitError)) throw e;
    err(e.message.startsWith(e.code) ? e.message : `${e.code}: ${errorMessage(e)}`);
    return false;
  }
}
