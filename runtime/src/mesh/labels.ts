/** Whether a workload's labels include every label of a selector. An empty or absent selector selects nothing (as in Kubernetes, where it means "endpoints managed elsewhere"). */
export function selectorMatches(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return false;
  let any = false;
  for (const k in selector) {
    any = true;
    if (labels[k] !== selector[k]) return false;
  }
  return any;
}
