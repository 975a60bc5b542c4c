/**
 * The API server connection: a kubeconfig file (`--kubeconfig`, `KUBECONFIG`) or the pod's
 * in-cluster ServiceAccount, and the typed API groups the controller calls.
 */
import {
  AuthenticationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig,
} from '@kubernetes/client-node';

export interface KubeClients {
  readonly config: KubeConfig;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly authn: AuthenticationV1Api;
}

export function kubeClients(kubeconfig?: string): KubeClients {
  const config = new KubeConfig();
  if (kubeconfig) config.loadFromFile(kubeconfig);
  else config.loadFromDefault();
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    authn: config.makeApiClient(AuthenticationV1Api),
  };
}
