// The mesh config's mTLS part: `identity` (CA source, certificate lifetime), `nodes`, `proxy.hbone`.
import { describe, expect, it } from 'vitest';
import { MeshConfigError, parseMeshConfig } from '@ambit/runtime';

function issues(yaml: string): string[] {
  try {
    parseMeshConfig(yaml, 'mesh.yaml');
    return [];
  } catch (e) {
    if (!(e instanceof MeshConfigError)) throw e;
    return e.issues.map((i) => `${i.pointer}: ${i.message}`);
  }
}

describe('mesh config: identity, nodes, hbone', () => {
  it('fills in the identity defaults: 24 h certificates', () => {
    const { config } = parseMeshConfig('node: n1\nidentity: { ca: { dir: ./ca } }\nnodes: [{ name: n2, address: 10.205.0.2 }]\n', 'mesh.yaml');
    expect(config.identity).toEqual({ ca: { dir: './ca' }, certTtlMs: 86_400_000 });
    expect(config.nodes).toEqual([{ name: 'n2', address: '10.205.0.2', hbonePort: 15008 }]);
    expect(config.proxy.hbone).toEqual({ address: '0.0.0.0', port: 15008 });
  });

  it('the CA comes from a folder or from files, not both and not neither', () => {
    expect(issues('node: n1\nidentity: { ca: {} }\n')).toEqual([
      '/identity/ca: needs dir (a folder to load the CA from, or to generate one in on first start), or certFile and keyFile',
    ]);
    expect(issues('node: n1\nidentity: { ca: { dir: ./ca, certFile: a.pem, keyFile: k.pem } }\n')).toEqual([
      '/identity/ca: give either dir, or certFile and keyFile (with chainFile, rootFile), not both',
    ]);
    expect(issues('node: n1\nidentity: { ca: { certFile: a.pem } }\n')).toHaveLength(1);
    expect(issues('node: n1\nidentity: { ca: { certFile: a.pem, keyFile: k.pem, rootFile: r.pem } }\n')).toEqual([]);
  });

  it('a certificate lifetime under a second, a duplicate node or a node address that is not an IP is an error', () => {
    expect(issues('node: n1\nidentity: { ca: { dir: ./ca }, certTtlMs: 10 }\n')[0]).toMatch(/^\/identity\/certTtlMs: .*>= 1000/);
    expect(issues('node: n1\nnodes: [{ name: n2, address: 10.0.0.2 }, { name: n2, address: 10.0.0.3 }]\n')).toEqual(['/nodes/1/name: node n2 is already listed at /nodes/0']);
    expect(issues('node: n1\nnodes: [{ name: n2, address: node-two.local }]\n')).toEqual(['/nodes/0/address: must be an IPv4 or IPv6 address, got "node-two.local"']);
  });

  it('the HBONE listener may not share an address and port with another listener', () => {
    expect(issues('node: n1\nidentity: { ca: { dir: ./ca } }\nproxy: { hbone: { address: 127.0.0.1, port: 15001 } }\n')).toEqual([
      '/proxy/hbone/port: 127.0.0.1:15001 is already the outbound listener; give each listener its own port',
    ]);
  });

  it('warns when workloads run on a node with no HBONE address (their traffic would go in plaintext)', () => {
    const { warnings } = parseMeshConfig('node: n1\nidentity: { ca: { dir: ./ca } }\nworkloads: [{ name: w, address: 10.205.9.9, node: n9 }]\n', 'mesh.yaml');
    expect(warnings.map((w) => w.message)).toEqual([
      'node n9 has workloads but no entry in nodes (its HBONE address): traffic to its workloads goes in plaintext, straight to the workload',
    ]);
  });
});
