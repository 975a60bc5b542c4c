// Stand-ins for CRDs other projects install (Istio's AuthorizationPolicy, Gateway API's HTTPRoute):
// served, schemaless, so that the API server knows their resources in tests.
export function standInCrd(group: string, kind: string, plural: string, version: string): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition',
    // *.k8s.io groups need an approval annotation; "unapproved, …" is accepted for a stand-in.
    metadata: { name: `${plural}.${group}`, annotations: { 'api-approved.kubernetes.io': 'unapproved, test stand-in' } },
    spec: {
      group, scope: 'Namespaced', names: { kind, plural },
      versions: [{ name: version, served: true, storage: true, subresources: { status: {} }, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
    },
  };
}

export const AUTHORIZATION_POLICY_CRD = standInCrd('security.istio.io', 'AuthorizationPolicy', 'authorizationpolicies', 'v1');
export const HTTP_ROUTE_CRD = standInCrd('gateway.networking.k8s.io', 'HTTPRoute', 'httproutes', 'v1');
