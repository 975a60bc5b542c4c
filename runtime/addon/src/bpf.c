/*
 * @ambit/addon/bpf: the eBPF loader's few kernel calls, on the system libbpf (>= 1.0).
 *
 *   loadObject(path, pinRoot)      -> { handle, programs: {name: {fd, attachType}}, maps: {name: {fd, ...}} }
 *   closeObject(handle)            -> undefined   (links already pinned stay attached)
 *   attachCgroup(progFd, attachType, cgroupPath, pinPath) -> 'attached' | 'updated'
 *   attachMap(progFd, attachType, mapFd, pinPath)         -> 'attached' | 'updated'
 *   detachLink(pinPath)            -> boolean      (false: no such pin)
 *   mapUpdate(mapFd, key, value) / mapDelete(mapFd, key) -> boolean / mapLookup(mapFd, key, size)
 *   mapKeys(mapFd, keySize)        -> Buffer[]
 *   possibleCpus()                 -> number
 *   mountBpffs(path)               -> undefined
 *   currentNetnsCookie()           -> bigint       (this network namespace's cookie)
 *
 * A link is always pinned (0600) at its pin path; when the pin already exists, the pinned link
 * is switched to the new program (bpf_link_update) instead of attaching a second time, so a
 * restarted loader takes over its predecessor's attachments without a gap.
 *
 * Errors are thrown like Node's system errors (`code` = errno name, `errno`, `syscall`), with the
 * last lines libbpf logged (e.g. the verifier's complaint) appended to the message.
 */
#ifndef __linux__
#error "@ambit/addon/bpf is Linux-only"
#endif

#include "system-error.h"
#include <node_api.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

/* ---- libbpf's log: kept (last few KiB) for error messages, never printed ----------------------- */

static char log_tail[2048];

static int on_libbpf_print(enum libbpf_print_level level, const char *format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  int n = vsnprintf(line, sizeof line, format, args);
  if (n <= 0) return 0;
  size_t used = strlen(log_tail);
  size_t add = strlen(line);
  if (add >= sizeof log_tail) add = sizeof log_tail - 1;
  if (used + add >= sizeof log_tail) {
    size_t drop = used + add - (sizeof log_tail - 1);
    memmove(log_tail, log_tail + drop, used - drop + 1);
    used -= drop;
  }
  memcpy(log_tail + used, line, add);
  log_tail[used + add] = '\0';
  return 0;
}


/* Throws Error("<what>: <CODE> (<strerror>)[; libbpf: <log>]"), .code/.errno/.syscall set. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  char message[3072];
  const char *name = errno_name(err);
  /* Only the last line or two of libbpf's log: the reason, not the whole program dump. */
  const char *tail = log_tail;
  size_t len = strlen(tail);
  if (len > 600) tail = log_tail + len - 600;
  snprintf(message, sizeof message, "%s: %s (%s)%s%s", what, name, strerror(err), *tail ? "; libbpf: " : "", tail);
  for (char *p = message; *p; p++)
    if (*p == '\n' && p[1] != '\0') *p = ' ';
  size_t mlen = strlen(message);
  if (mlen > 0 && message[mlen - 1] == '\n') message[mlen - 1] = '\0';
  log_tail[0] = '\0';
  return throw_system_error(env, err, syscall, message);
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* ---- arguments --------------------------------------------------------------------------------- */

static bool arg_string(napi_env env, napi_value v, char *out, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, size, &len) != napi_ok) return false;
  return len < size - 1;
}

static bool arg_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static bool arg_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_buffer = false;
  if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer) return false;
  return napi_get_buffer_info(env, v, data, len) == napi_ok;
}

#define ARGS(n)                                                                                    \
  size_t argc = (n);                                                                               \
  napi_value argv[(n)];                                                                            \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < (n))               \
    return throw_type(env, "missing arguments");

static napi_value make_int(napi_env env, int64_t value) {
  napi_value v;
  napi_create_int64(env, value, &v);
  return v;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value make_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static napi_value make_undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

/* ---- objects ------------------------------------------------------------------------------------ */

#define MAX_OBJECTS 64
static struct bpf_object *objects[MAX_OBJECTS];

static napi_value load_object(napi_env env, napi_callback_info info) {
  ARGS(2);
  char path[4096], pin_root[4096];
  if (!arg_string(env, argv[0], path, sizeof path) || !arg_string(env, argv[1], pin_root, sizeof pin_root))
    return throw_type(env, "loadObject(path, pinRoot): both must be strings");
  int slot = -1;
  for (int i = 0; i < MAX_OBJECTS; i++)
    if (!objects[i]) { slot = i; break; }
  if (slot < 0) return throw_errno(env, EMFILE, "bpf_object__open_file", "loadObject: too many objects open");

  log_tail[0] = '\0';
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);
  struct bpf_object *obj = bpf_object__open_file(path, &opts);
  if (!obj) {
    int err = errno;
    char what[4200];
    snprintf(what, sizeof what, "opening %s", path);
    return throw_errno(env, err, "bpf_object__open_file", what);
  }
  int rc = bpf_object__load(obj);
  if (rc) {
    int err = -rc;
    bpf_object__close(obj);
    char what[4200];
    snprintf(what, sizeof what, "loading %s", path);
    return throw_errno(env, err, "bpf_object__load", what);
  }
  objects[slot] = obj;

  napi_value result, programs, maps;
  napi_create_object(env, &result);
  napi_create_object(env, &programs);
  napi_create_object(env, &maps);
  struct bpf_program *prog;
  bpf_object__for_each_program(prog, obj) {
    napi_value p;
    napi_create_object(env, &p);
    napi_set_named_property(env, p, "fd", make_int(env, bpf_program__fd(prog)));
    napi_set_named_property(env, p, "attachType", make_int(env, bpf_program__expected_attach_type(prog)));
    napi_set_named_property(env, p, "section", make_string(env, bpf_program__section_name(prog)));
    napi_set_named_property(env, programs, bpf_program__name(prog), p);
  }
  struct bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    napi_value m;
    napi_create_object(env, &m);
    napi_set_named_property(env, m, "fd", make_int(env, bpf_map__fd(map)));
    napi_set_named_property(env, m, "keySize", make_int(env, bpf_map__key_size(map)));
    napi_set_named_property(env, m, "valueSize", make_int(env, bpf_map__value_size(map)));
    napi_set_named_property(env, m, "maxEntries", make_int(env, bpf_map__max_entries(map)));
    const char *pin = bpf_map__pin_path(map);
    if (pin) napi_set_named_property(env, m, "pinPath", make_string(env, pin));
    napi_set_named_property(env, maps, bpf_map__name(map), m);
  }
  napi_set_named_property(env, result, "handle", make_int(env, slot));
  napi_set_named_property(env, result, "programs", programs);
  napi_set_named_property(env, result, "maps", maps);
  return result;
}

static napi_value close_object(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t handle;
  if (!arg_int(env, argv[0], &handle) || handle < 0 || handle >= MAX_OBJECTS)
    return throw_type(env, "closeObject(handle): not a handle from loadObject");
  if (objects[handle]) {
    bpf_object__close(objects[handle]);
    objects[handle] = NULL;
  }
  return make_undefined(env);
}

/* ---- links -------------------------------------------------------------------------------------- */

/* Attaches prog to target (a cgroup or map fd) as a pinned link, or switches the link already
   pinned at pin_path to prog. */
static napi_value attach_pinned(napi_env env, int prog_fd, int attach_type, int target_fd, const char *pin_path,
                                const char *what) {
  int existing = bpf_obj_get(pin_path);
  if (existing >= 0) {
    int rc = bpf_link_update(existing, prog_fd, NULL);
    int err = errno;
    close(existing);
    if (rc) return throw_errno(env, err, "bpf_link_update", what);
    return make_string(env, "updated");
  }
  if (errno != ENOENT) return throw_errno(env, errno, "bpf_obj_get", what);
  int link_fd = bpf_link_create(prog_fd, target_fd, (enum bpf_attach_type)attach_type, NULL);
  if (link_fd < 0) return throw_errno(env, errno, "bpf_link_create", what);
  if (bpf_obj_pin(link_fd, pin_path)) {
    int err = errno;
    close(link_fd); /* the only reference: the attachment goes with it */
    return throw_errno(env, err, "bpf_obj_pin", what);
  }
  chmod(pin_path, 0600);
  close(link_fd);
  return make_string(env, "attached");
}

static napi_value attach_cgroup(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t prog_fd, attach_type;
  char cgroup[4096], pin_path[4096];
  if (!arg_int(env, argv[0], &prog_fd) || !arg_int(env, argv[1], &attach_type) ||
      !arg_string(env, argv[2], cgroup, sizeof cgroup) || !arg_string(env, argv[3], pin_path, sizeof pin_path))
    return throw_type(env, "attachCgroup(progFd, attachType, cgroupPath, pinPath)");
  char what[8300];
  snprintf(what, sizeof what, "attaching to cgroup %s (pin %s)", cgroup, pin_path);
  int cg = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) return throw_errno(env, errno, "open", what);
  napi_value result = attach_pinned(env, prog_fd, attach_type, cg, pin_path, what);
  close(cg);
  return result;
}

static napi_value attach_map(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t prog_fd, attach_type, map_fd;
  char pin_path[4096];
  if (!arg_int(env, argv[0], &prog_fd) || !arg_int(env, argv[1], &attach_type) || !arg_int(env, argv[2], &map_fd) ||
      !arg_string(env, argv[3], pin_path, sizeof pin_path))
    return throw_type(env, "attachMap(progFd, attachType, mapFd, pinPath)");
  char what[4200];
  snprintf(what, sizeof what, "attaching to a map (pin %s)", pin_path);
  return attach_pinned(env, prog_fd, attach_type, map_fd, pin_path, what);
}

static napi_value detach_link(napi_env env, napi_callback_info info) {
  ARGS(1);
  char pin_path[4096];
  if (!arg_string(env, argv[0], pin_path, sizeof pin_path)) return throw_type(env, "detachLink(pinPath)");
  char what[4200];
  snprintf(what, sizeof what, "detaching the link pinned at %s", pin_path);
  int fd = bpf_obj_get(pin_path);
  if (fd < 0) {
    if (errno == ENOENT) return make_bool(env, false);
    return throw_errno(env, errno, "bpf_obj_get", what);
  }
  /* Detach first, so that the attachment ends now even if another process holds the link. */
  int rc = bpf_link_detach(fd);
  int err = errno;
  close(fd);
  if (rc && err != EINVAL && err != ENOLINK) return throw_errno(env, err, "bpf_link_detach", what);
  if (unlink(pin_path) && errno != ENOENT) return throw_errno(env, errno, "unlink", what);
  return make_bool(env, true);
}

/* ---- maps --------------------------------------------------------------------------------------- */

static napi_value map_update(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t fd;
  void *key, *value;
  size_t klen, vlen;
  if (!arg_int(env, argv[0], &fd) || !arg_buffer(env, argv[1], &key, &klen) || !arg_buffer(env, argv[2], &value, &vlen))
    return throw_type(env, "mapUpdate(mapFd, key: Buffer, value: Buffer)");
  if (bpf_map_update_elem(fd, key, value, BPF_ANY)) return throw_errno(env, errno, "bpf_map_update_elem", "mapUpdate");
  return make_undefined(env);
}

static napi_value map_delete(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd;
  void *key;
  size_t klen;
  if (!arg_int(env, argv[0], &fd) || !arg_buffer(env, argv[1], &key, &klen))
    return throw_type(env, "mapDelete(mapFd, key: Buffer)");
  if (bpf_map_delete_elem(fd, key)) {
    if (errno == ENOENT) return make_bool(env, false);
    return throw_errno(env, errno, "bpf_map_delete_elem", "mapDelete");
  }
  return make_bool(env, true);
}

static napi_value map_lookup(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t fd, size;
  void *key;
  size_t klen;
  if (!arg_int(env, argv[0], &fd) || !arg_buffer(env, argv[1], &key, &klen) || !arg_int(env, argv[2], &size) ||
      size <= 0 || size > (1 << 20))
    return throw_type(env, "mapLookup(mapFd, key: Buffer, valueBytes)");
  void *data;
  napi_value buffer;
  if (napi_create_buffer(env, (size_t)size, &data, &buffer) != napi_ok) return NULL;
  memset(data, 0, (size_t)size);
  if (bpf_map_lookup_elem(fd, key, data)) {
    if (errno == ENOENT) {
      napi_value null_v;
      napi_get_null(env, &null_v);
      return null_v;
    }
    return throw_errno(env, errno, "bpf_map_lookup_elem", "mapLookup");
  }
  return buffer;
}

static napi_value map_keys(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd, size;
  if (!arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &size) || size <= 0 || size > 4096)
    return throw_type(env, "mapKeys(mapFd, keyBytes)");
  napi_value array;
  napi_create_array(env, &array);
  unsigned char *prev = calloc(2, (size_t)size);
  if (!prev) return throw_errno(env, ENOMEM, "calloc", "mapKeys");
  unsigned char *next = prev + size;
  uint32_t count = 0;
  void *cursor = NULL;
  while (count < 1000000) {
    if (bpf_map_get_next_key(fd, cursor, next)) {
      int err = errno;
      if (err == ENOENT) break;
      free(prev);
      return throw_errno(env, err, "bpf_map_get_next_key", "mapKeys");
    }
    void *data;
    napi_value buffer;
    napi_create_buffer_copy(env, (size_t)size, next, &data, &buffer);
    napi_set_element(env, array, count++, buffer);
    memcpy(prev, next, (size_t)size);
    cursor = prev;
  }
  free(prev);
  return array;
}

static napi_value possible_cpus(napi_env env, napi_callback_info info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) return throw_errno(env, -n, "libbpf_num_possible_cpus", "possibleCpus");
  return make_int(env, n);
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* The cookie of the calling thread's network namespace (what bpf_get_netns_cookie() returns for
   sockets there), read from a throwaway socket. */
static napi_value current_netns_cookie(napi_env env, napi_callback_info info) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "currentNetnsCookie");
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int err = errno;
  close(fd);
  if (rc) return throw_errno(env, err, "getsockopt", "currentNetnsCookie (SO_NETNS_COOKIE needs kernel 5.14)");
  napi_value v;
  napi_create_bigint_uint64(env, cookie, &v);
  return v;
}

static napi_value mount_bpffs(napi_env env, napi_callback_info info) {
  ARGS(1);
  char path[4096];
  if (!arg_string(env, argv[0], path, sizeof path)) return throw_type(env, "mountBpffs(path)");
  char what[4200];
  snprintf(what, sizeof what, "mounting bpffs at %s", path);
  if (mount("bpf", path, "bpf", 0, "mode=0700")) return throw_errno(env, errno, "mount", what);
  return make_undefined(env);
}

NAPI_MODULE_INIT() {
  libbpf_set_print(on_libbpf_print);
  napi_property_descriptor props[] = {
      {"loadObject", NULL, load_object, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeObject", NULL, close_object, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attachCgroup", NULL, attach_cgroup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attachMap", NULL, attach_map, NULL, NULL, NULL, napi_enumerable, NULL},
      {"detachLink", NULL, detach_link, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapUpdate", NULL, map_update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapDelete", NULL, map_delete, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapLookup", NULL, map_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapKeys", NULL, map_keys, NULL, NULL, NULL, napi_enumerable, NULL},
      {"possibleCpus", NULL, possible_cpus, NULL, NULL, NULL, napi_enumerable, NULL},
      {"currentNetnsCookie", NULL, current_netns_cookie, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mountBpffs", NULL, mount_bpffs, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
