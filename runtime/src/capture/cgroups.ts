/** cgroup (v2) paths and ids: the enrolled pods', and the proxy's own. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** An absolute cgroup directory: `p` when absolute, else `p` under the cgroup2 mount. */
export function resolveCgroup(mount: string, p: string): string {
  return path.isAbsolute(p) ? path.normalize(p) : path.join(mount, p);
}

/** The cgroup2 path of this process (`0::/…` in /proc/self/cgroup), relative to the mount. */
export function ownCgroup(): string {
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
