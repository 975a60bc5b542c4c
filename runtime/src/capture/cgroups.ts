/** cgroup (v2) paths and ids: the enrolled pods', and the proxy's own. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** An absolute cgroup directory: `p` when absolute, else `p` under the cgroup2 mount. */
export function resolveCgroup(mount: string, p: string): string {
  return path.isAbsolute(p) ? path.normalize(p) : path.join(mount, p);
}

/** Environment variable naming the proxy's own pod (Kubernetes: the downward API's metadata.uid). */
export const POD_UID_ENV = 'AMBIT_POD_UID';

/**
 * The proxy's own cgroup, relative to the cgroup2 mount `mount`. In a pod (`AMBIT_POD_UID` set), its
 * pod's kubelet cgroup: inside the container's cgroup namespace /proc/self/cgroup reads `0::/`, which
 * under the host's cgroup2 mount would be the root of every cgroup. Else the cgroup2 path of this
 * process (`0::/…` in /proc/self/cgroup).
 */
export function ownCgroup(mount: string, podUid: string | undefined = process.env[POD_UID_ENV], exists: (dir: string) => boolean = existsSync): string {
  if (podUid) {
    const dir = podCgroupDir(mount, { podUid }, exists);
    if (!dir) throw new Error(`${POD_UID_ENV}=${podUid}, but ${podCgroupWanted(mount, { podUid })} found nothing: is the host's cgroup2 hierarchy mounted there?`);
    return path.relative(mount, dir);
  }
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error('this process has no cgroup2 entry in /proc/self/cgroup (cgroup2 is not mounted?)');
  return line.slice(3).replace(/^\//, '');
}

/** The cgroup's id (its inode on cgroup2: what bpf_get_current_cgroup_id() returns). */
export function cgroupId(dir: string): bigint {
  return statSync(dir, { bigint: true }).ino;
}

/** Path components of `dir` below the cgroup2 mount: its level in the hierarchy. */
export function cgroupLevel(mount: string, dir: string): number {
  const rel = path.relative(mount, dir);
  return rel === '' ? 0 : rel.split(path.sep).length;
}

/** Where the kubelet puts a pod's cgroup, relative to the cgroup2 mount (cgroupfs and systemd drivers, every QoS class). */
export function kubeletPodCgroups(uid: string): string[] {
  const u = uid.replace(/-/g, '_');
  return [
    `kubepods/pod${uid}`,
    `kubepods/burstable/pod${uid}`,
    `kubepods/besteffort/pod${uid}`,
    `kubepods.slice/kubepods-pod${u}.slice`,
    `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${u}.slice`,
    `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u}.slice`,
  ];
}

/** An enrolled pod's cgroup directory: its `cgroup`, else the first kubelet layout of its `podUid` that exists. Undefined when none exists. */
export function podCgroupDir(mount: string, pod: { cgroup?: string; podUid?: string }, exists: (dir: string) => boolean = existsSync): string | undefined {
  const candidates = pod.cgroup !== undefined ? [pod.cgroup] : kubeletPodCgroups(pod.podUid ?? '');
  for (const c of candidates) {
    const dir = resolveCgroup(mount, c);
    if (exists(dir)) return dir;
  }
  return undefined;
}

/** What a pod's cgroup was looked for as, for messages. */
export function podCgroupWanted(mount: string, pod: { cgroup?: string; podUid?: string }): string {
  return pod.cgroup !== undefined ? resolveCgroup(mount, pod.cgroup) : `pod UID ${pod.podUid ?? '?'} (looked for kubepods/…pod<uid> and kubepods.slice/…-pod<uid_>.slice under ${mount})`;
}
