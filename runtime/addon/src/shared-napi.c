/*
 * ambit_shared: the node-wide shared table (shared-table.h) for JavaScript, used by the V8
 * filter engine's threads for the `shared` capability.
 *
 *   open(dir, scope, maxKeys?)        -> table (an external)   throws code AMBIT_ERR_SHARED_TABLE
 *   path(table)                       -> string
 *   get(table, key, version)          -> value | undefined     version: a Uint32Array, [0] set to the entry's
 *   set(table, key, value, version)   -> boolean               compare-and-set (version 0: absent);
 *                                                              false also when a new key finds the table full
 *   add(table, key, delta)            -> number
 *
 * A key or value out of bounds, or a delta that is not finite, throws an Error with code
 * AMBIT_ERR_HOST_CALL (the filter made a bad call); `add` of a new key to a full table throws
 * AMBIT_ERR_SHARED_FULL; a damaged file or a lock held too long throws AMBIT_ERR_SHARED_TABLE.
 */
#include "shared-table.h"
#include "system-error.h"
#include <node_api.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CHECK(env, call)                                                                           \
  do {                                                                                             \
    if ((call) != napi_ok) return throw_coded((env), "AMBIT_ERR_ADDON", #call " failed");        \
  } while (0)

static napi_value throw_coded(napi_env env, const char *code, const char *message) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, code, message);
  return NULL;
}

/* Reads a string argument into buf (capacity max + 1); *len is its full UTF-8 length, even when it did not fit. */
static bool string_arg(napi_env env, napi_value v, const char *what, char *buf, size_t max, size_t *len) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_string) {
    char m[96];
    snprintf(m, sizeof m, "shared storage: the %s must be a string", what);
    napi_throw_type_error(env, "AMBIT_ERR_HOST_CALL", m);
    return false;
  }
  if (napi_get_value_string_utf8(env, v, buf, max + 1, len) != napi_ok) return false;
  if (*len + 4 > max) { /* it may have been cut (at a character's boundary): ask for the whole length */
    if (napi_get_value_string_utf8(env, v, NULL, 0, len) != napi_ok) return false;
  }
  return true;
}

static bool table_arg(napi_env env, napi_value v, ambit_st **t) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "AMBIT_ERR_ADDON", "expected a table from open()");
    return false;
  }
  *t = data;
  return true;
}

/* Reads `n` arguments of a call whose first is a table. False (an exception pending) when they are not. */
static bool table_call(napi_env env, napi_callback_info info, size_t n, napi_value *argv, ambit_st **t) {
  size_t argc = n; /* missing arguments read as undefined, which the checks refuse */
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_coded(env, "AMBIT_ERR_ADDON", "napi_get_cb_info failed");
    return false;
  }
  return table_arg(env, argv[0], t);
}

/* Throws what a failed table call means; returns NULL. */
static napi_value throw_result(napi_env env, ambit_st *t, int r, size_t key_len, size_t value_len, double delta) {
  char m[600];
  switch (r) {
    case AMBIT_ST_EKEY:
      snprintf(m, sizeof m, "shared storage: a key must be 1 to %d bytes, got %zu; hash long keys first", AMBIT_ST_MAX_KEY, key_len);
      return throw_coded(env, "AMBIT_ERR_HOST_CALL", m);
    case AMBIT_ST_EVALUE:
      snprintf(m, sizeof m, "shared storage: a value must be at most %d bytes, got %zu", AMBIT_ST_MAX_VALUE, value_len);
      return throw_coded(env, "AMBIT_ERR_HOST_CALL", m);
    case AMBIT_ST_EDELTA:
      snprintf(m, sizeof m, "shared-add: delta must be a finite integer, got %g", delta);
      return throw_coded(env, "AMBIT_ERR_HOST_CALL", m);
    case AMBIT_ST_FULL:
      snprintf(m, sizeof m, "shared storage: the table %s is full (maxKeys %u, no expired entry in the key's bucket); raise the binding's maxKeys", ambit_st_path(t), (unsigned)ambit_st_max_keys(t));
      return throw_coded(env, "AMBIT_ERR_SHARED_FULL", m);
    case AMBIT_ST_ECORRUPT:
      snprintf(m, sizeof m, "shared storage: the table %s is damaged (a length or a lock out of bounds); remove it, or give the proxy a new shared directory", ambit_st_path(t));
      return throw_coded(env, "AMBIT_ERR_SHARED_TABLE", m);
    default: {
      int err = ambit_st_last_lock_error();
      if (err == ETIMEDOUT) {
        snprintf(m, sizeof m, "shared storage: a bucket lock of %s was held for over %d ms by thread %d (a stuck or foreign process); the call failed instead of waiting", ambit_st_path(t), AMBIT_ST_LOCK_WAIT_MS, ambit_st_last_lock_holder());
        return throw_coded(env, "AMBIT_ERR_SHARED_TABLE", m);
      }
      return throw_system_error(env, err, "pthread_mutex_lock", "shared storage: a bucket lock failed");
    }
  }
}

static napi_value st_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t max_keys = AMBIT_ST_DEFAULT_KEYS;
  napi_valuetype type = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &type);
  if (type != napi_undefined && napi_get_value_uint32(env, argv[2], &max_keys) != napi_ok)
    return throw_coded(env, "AMBIT_ERR_SHARED_TABLE", "shared table: maxKeys must be a number");
  char dir[4096], scope[AMBIT_ST_MAX_SCOPE + 2];
  size_t dir_len, scope_len;
  if (!string_arg(env, argv[0], "directory", dir, sizeof dir - 1, &dir_len)) return NULL;
  if (!string_arg(env, argv[1], "scope", scope, AMBIT_ST_MAX_SCOPE + 1, &scope_len)) return NULL;
  if (dir_len >= sizeof dir - 1) return throw_coded(env, "AMBIT_ERR_SHARED_TABLE", "shared table directory: path too long");
  char why[512];
  ambit_st *t = ambit_st_open(dir, scope, max_keys, why, sizeof why);
  if (!t) return throw_coded(env, "AMBIT_ERR_SHARED_TABLE", why);
  napi_value out;
  CHECK(env, napi_create_external(env, t, NULL, NULL, &out)); /* tables live as long as the process */
  return out;
}

static napi_value st_path(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  ambit_st *t;
  if (!table_call(env, info, 1, argv, &t)) return NULL;
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, ambit_st_path(t), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value st_get(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  ambit_st *t;
  if (!table_call(env, info, 3, argv, &t)) return NULL;
  /* The version goes into the caller's Uint32Array: one object fewer to make per call. */
  napi_typedarray_type type;
  size_t length = 0;
  void *cells = NULL;
  if (napi_get_typedarray_info(env, argv[2], &type, &length, &cells, NULL, NULL) != napi_ok || type != napi_uint32_array || length < 1)
    return throw_coded(env, "AMBIT_ERR_ADDON", "get(table, key, version) needs a Uint32Array for the version");
  char key[AMBIT_ST_MAX_KEY + 1], value[AMBIT_ST_MAX_VALUE];
  size_t key_len, value_len = 0;
  uint32_t version = 0;
  if (!string_arg(env, argv[1], "key", key, AMBIT_ST_MAX_KEY, &key_len)) return NULL;
  int r = key_len > AMBIT_ST_MAX_KEY ? AMBIT_ST_EKEY : ambit_st_get(t, key, key_len, value, &value_len, &version);
  napi_value out;
  if (r == AMBIT_ST_ABSENT) {
    CHECK(env, napi_get_undefined(env, &out));
    return out;
  }
  if (r != AMBIT_ST_OK) return throw_result(env, t, r, key_len, 0, 0);
  ((uint32_t *)cells)[0] = version;
  CHECK(env, napi_create_string_utf8(env, value, value_len, &out));
  return out;
}

static napi_value st_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  ambit_st *t;
  if (!table_call(env, info, 4, argv, &t)) return NULL;
  char key[AMBIT_ST_MAX_KEY + 1], value[AMBIT_ST_MAX_VALUE + 1];
  size_t key_len, value_len;
  uint32_t version;
  if (!string_arg(env, argv[1], "key", key, AMBIT_ST_MAX_KEY, &key_len)) return NULL;
  if (!string_arg(env, argv[2], "value", value, AMBIT_ST_MAX_VALUE, &value_len)) return NULL;
  CHECK(env, napi_get_value_uint32(env, argv[3], &version));
  int r = key_len > AMBIT_ST_MAX_KEY     ? AMBIT_ST_EKEY
          : value_len > AMBIT_ST_MAX_VALUE ? AMBIT_ST_EVALUE
                                           : ambit_st_set(t, key, key_len, value, value_len, version);
  if (r < 0) return throw_result(env, t, r, key_len, value_len, 0);
  napi_value out;
  CHECK(env, napi_get_boolean(env, r == AMBIT_ST_OK, &out));
  return out;
}

static napi_value st_add(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  ambit_st *t;
  if (!table_call(env, info, 3, argv, &t)) return NULL;
  char key[AMBIT_ST_MAX_KEY + 1];
  size_t key_len;
  double delta, result = 0;
  if (!string_arg(env, argv[1], "key", key, AMBIT_ST_MAX_KEY, &key_len)) return NULL;
  CHECK(env, napi_get_value_double(env, argv[2], &delta));
  int r = key_len > AMBIT_ST_MAX_KEY ? AMBIT_ST_EKEY : ambit_st_add(t, key, key_len, delta, &result);
  if (r != AMBIT_ST_OK) return throw_result(env, t, r, key_len, 0, delta);
  napi_value out;
  CHECK(env, napi_create_double(env, result, &out));
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"open", NULL, st_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"path", NULL, st_path, NULL, NULL, NULL, napi_enumerable, NULL},
      {"get", NULL, st_get, NULL, NULL, NULL, napi_enumerable, NULL},
      {"set", NULL, st_set, NULL, NULL, NULL, napi_enumerable, NULL},
      {"add", NULL, st_add, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return throw_coded(env, "AMBIT_ERR_ADDON", "napi_define_properties failed");
  return exports;
}
