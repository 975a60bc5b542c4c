/**
 * The API server connection: a kubeconfig file (`--kubeconfig`, `KUBECONFIG`) or the pod's
 * in-cluster ServiceAccount, and the typed API groups the controller calls.
 */
import {
  AuthenticationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig,
} from '@kubernetes/client-node';
import { ControllerError, errorMessage } from '../errors.js';

export interface KubeClients {
  readonly config: KubeConfig;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly authn: AuthenticationV1Api;
  readonly coordination: CoordinationV1Api;
}

export function kubeClients(kubeconfig?: string): KubeClients {
  const config = new KubeConfig();
  try {
    if (kubeconfig) config.loadFromFile(kubeconfig);
    else config.loadFromDefault();
  } catch (e) {
    throw new ControllerError('AMBIT_ERR_KUBE_API', `cannot load the kubeconfig ${kubeconfig ?? process.env.KUBECONFIG ?? '(default)'}: ${errorMessage(e)}; pass --kubeconfig <file>, or run in a pod with a ServiceAccount`, { cause: e });
  }
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    authn: config.makeApiClient(AuthenticationV1Api),
    coordination: config.makeApiClient(CoordinationV1Api),
  };
}
