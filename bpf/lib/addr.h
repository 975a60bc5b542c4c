/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Address helpers shared by the capture programs: v4-mapped IPv6, loopback, meshed lookups. */
#ifndef AMBIT_ADDR_H
#define AMBIT_ADDR_H

#include "maps.h"
#include <bpf/bpf_endian.h>

/* ::ffff:a.b.c.d */
static __always_inline bool ambit_v4_mapped(const __u32 ip6[4]) {
  return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline bool ambit_loopback4(__u32 ip4) {
  return (bpf_ntohl(ip4) >> 24) == 127;
}

static __always_inline bool ambit_loopback6(const __u32 ip6[4]) {
  return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0 && ip6[3] == bpf_htonl(1);
}

/* AMBIT_DEST_* flags of family/ip:port (host-order port): the exact port first, then any port. */
static __always_inline __u32 ambit_dest_flags(__u32 family, const __u32 ip[4], __u32 port) {
  struct ambit_dest_key key = {};
  key.family = family;
  key.ip[0] = ip[0];
  key.ip[1] = ip[1];
  key.ip[2] = ip[2];
  key.ip[3] = ip[3];
  key.port = port;
  __u32 *flags = bpf_map_lookup_elem(&ambit_meshed, &key);
  if (flags) return *flags;
  key.port = 0;
  flags = bpf_map_lookup_elem(&ambit_meshed, &key);
  return flags ? *flags : 0;
}

static __always_inline bool ambit_ip_eq(const __u32 a[4], const __u32 b[4]) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

#endif
