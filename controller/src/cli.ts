#!/usr/bin/env node
/**
 * `ambit controller` (also `ambit-controller`): the Kubernetes control plane. See README.md
 * for the flags, the ports and the RBAC it needs.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import { crds } from './crd/crd.js';
import { DEFAULTS, startController } from './controller.js';
import { LEADER_DEFAULTS } from './kube/leader.js';
import { ControllerError } from './errors.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} takes a whole number, got ${v}`);
    return n;
  };
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('ambit controller').description('the Ambit control plane for Kubernetes');
  program
    .addOption(new Option('--kubeconfig <file>', 'kubeconfig (default: KUBECONFIG, else in-cluster)'))
    .addOption(new Option('--namespace <ns>', 'namespace of the CA Secret, the root ConfigMap and Events').env('POD_NAMESPACE').default(DEFAULTS.namespace))
    .option('--grpc-address <ip>', 'gRPC listen address', DEFAULTS.grpcAddress)
    .option('--grpc-port <port>', 'gRPC (TLS) port: config streams and CSRs', int('--grpc-port'), DEFAULTS.grpcPort)
    .option('--admin-address <ip>', 'admin listen address', DEFAULTS.adminAddress)
    .option('--admin-port <port>', 'admin port: /healthz /ready /metrics /debug/nodes', int('--admin-port'), DEFAULTS.adminPort)
    .option('--ca-secret <name>', 'Secret holding the mesh CA (created when absent)', DEFAULTS.caSecret)
    .option('--root-configmap <name>', 'ConfigMap the roots are published in', DEFAULTS.rootConfigMap)
    .option('--trust-domain <domain>', 'SPIFFE trust domain', DEFAULTS.trustDomain)
    .option('--node-service-account <ns:name>', 'the ServiceAccount of node proxies', DEFAULTS.nodeServiceAccount)
    .option('--root-namespace <ns>', 'AuthorizationPolicies here apply mesh-wide', DEFAULTS.rootNamespace)
    .option('--server-name <dns...>', 'DNS names in the controller\'s serving certificate (default: ambit-controller.<namespace>.svc)')
    .option('--filter-root <dir>', 'where filter packages are installed (node_modules)', process.cwd())
    .option('--cert-ttl-ms <ms>', 'workload certificate lifetime', int('--cert-ttl-ms'), DEFAULTS.certTtlMs)
    .option('--no-leader-elect', 'write without electing a leader (one replica only)')
    .option('--leader-lease <name>', 'Lease (in --namespace) the replicas elect a leader with', 'ambit-controller')
    .option('--leader-lease-duration-ms <ms>', 'how long a leader\'s Lease holds without renewal', int('--leader-lease-duration-ms'), LEADER_DEFAULTS.leaseDurationMs)
    .option('--leader-renew-deadline-ms <ms>', 'a leader that has not renewed for this long steps down', int('--leader-renew-deadline-ms'), LEADER_DEFAULTS.renewDeadlineMs)
    .option('--leader-retry-period-ms <ms>', 'how often each replica tries to take or renew the Lease', int('--leader-retry-period-ms'), LEADER_DEFAULTS.retryPeriodMs)
    .addOption(new Option('--log-level <level>', 'log level').choices(LEVELS).default('info'));
  program.command('crds').description('print the CustomResourceDefinitions (YAML)').action(() => {
    process.stdout.write(crds().map((c) => stringify(c, { lineWidth: 0 })).join('---\n'));
  });
  program.action(async (opts: {
    kubeconfig?: string; namespace: string; grpcAddress: string; grpcPort: number; adminAddress: string; adminPort: number; caSecret: string;
    rootConfigmap: string; trustDomain: string; nodeServiceAccount: string; rootNamespace: string; serverName?: string[]; filterRoot: string;
    certTtlMs: number; logLevel: (typeof LEVELS)[number]; leaderElect: boolean; leaderLease: string; leaderLeaseDurationMs: number;
    leaderRenewDeadlineMs: number; leaderRetryPeriodMs: number;
  }) => {
    const min = LEVELS.indexOf(opts.logLevel);
    const log = (level: 'info' | 'warn' | 'error', msg: string) => {
      if (LEVELS.indexOf(level) >= min) process.stderr.write(`${JSON.stringify({ level, time: Date.now(), msg })}\n`);
    };
    if (opts.leaderElect && !(opts.leaderRetryPeriodMs < opts.leaderRenewDeadlineMs && opts.leaderRenewDeadlineMs < opts.leaderLeaseDurationMs)) {
      throw new ControllerError('AMBIT_ERR_CONTROLLER_FLAGS', `leader election needs --leader-retry-period-ms < --leader-renew-deadline-ms < --leader-lease-duration-ms, got ${opts.leaderRetryPeriodMs}, ${opts.leaderRenewDeadlineMs}, ${opts.leaderLeaseDurationMs}`);
    }
    const running = await startController({
      ...opts,
      leaderElection: opts.leaderElect
        ? { lease: opts.leaderLease, leaseDurationMs: opts.leaderLeaseDurationMs, renewDeadlineMs: opts.leaderRenewDeadlineMs, retryPeriodMs: opts.leaderRetryPeriodMs }
        : false,
      rootConfigMap: opts.rootConfigmap,
      serverNames: opts.serverName ?? [`ambit-controller.${opts.namespace}.svc`],
      filterRoot: path.resolve(opts.filterRoot),
      log,
    });
    log('info', `admin on ${opts.adminAddress}:${running.adminPort}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await running.close();
  });
  await program.parseAsync(argv, { from: 'user' });
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && realpathSync(process.argv[1]) === self) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    const code = (e as { code?: unknown }).code;
    process.stderr.write(`ambit controller: ${typeof code === 'string' && code.startsWith('AMBIT_ERR_') ? `error ${code}: ` : ''}${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
