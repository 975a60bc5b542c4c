// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_msg, attached (as a bpf_link) to the ambit_socks sockhash: a write on a socket in the
 * map goes straight into the receive queue of its peer when the peer is in the map too — no
 * TCP segments, no veth, no netfilter. The first write decides, once per socket, between the
 * short circuit and TCP (ambit_redirect_state), so that bytes already in the TCP stack are
 * never overtaken by later ones. Keys carry each socket's netns: a write goes only to the socket
 * with the swapped tuple in the peer's netns (lib/sockkey.h), never to a look-alike elsewhere.
 */
#include "lib/sockkey.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_msg")
int ambit_redirect(struct sk_msg_md *msg) {
  struct ambit_sock_key key, peer;
  AMBIT_SOCK_KEY(key, msg);
  __u32 *path = bpf_map_lookup_elem(&ambit_redirect_state, &key);
  if (path && *path == AMBIT_PATH_STACK) {
    ambit_count(AMBIT_STAT_MSG_STACK, 1);
    return SK_PASS;
  }
  struct ambit_config *cfg = ambit_config_get();
  __u64 netns = cfg ? ambit_peer_netns_of(&key, cfg->proxy_netns_cookie) : AMBIT_NETNS_CONFLICT;
  ambit_peer_key(&peer, &key, netns);
  __u32 size = msg->size;
  if (netns != AMBIT_NETNS_CONFLICT && bpf_msg_redirect_hash(msg, &ambit_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
    if (!path) {
      __u32 decided = AMBIT_PATH_REDIRECT;
      bpf_map_update_elem(&ambit_redirect_state, &key, &decided, BPF_NOEXIST);
    }
    ambit_count(AMBIT_STAT_MSG_REDIRECTED, 1);
    ambit_count(AMBIT_STAT_MSG_REDIRECTED_BYTES, size);
    return SK_PASS;
  }
  /* The peer is not (or no longer) in the map: this write, and all later ones, go through TCP. */
  if (!path) {
    __u32 decided = AMBIT_PATH_STACK;
    bpf_map_update_elem(&ambit_redirect_state, &key, &decided, BPF_NOEXIST);
  }
  ambit_count(AMBIT_STAT_MSG_STACK, 1);
  return SK_PASS;
}
