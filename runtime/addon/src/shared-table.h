/*
 * The shared table behind the filter capability `shared`: a small key-value table in a file
 * mapped into every process of a node proxy (the `node:cluster` workers), so a rate limit or a
 * counter kept there is one for the whole node, not one per worker.
 *
 * One file per binding scope (`<binding>/<filter>` of the mesh config) in the node's shared
 * directory, named after the scope's FNV-1a hash: `<dir>/<16 hex digits>.table`. Both filter
 * engines use this code: the V8 engine through the `ambit_shared` N-API addon
 * (`shared-napi.c`), the wasmtime engine compiled into its Rust crate (`runtime/native`).
 *
 * Rules (the same as the SDK test harness's in-memory table, `sdk/src/host/shared.ts`):
 * keys of 1..128 bytes, values of 0..256 bytes; a table holds at most `max_keys` keys (the
 * binding's `maxKeys`, default 4096), in buckets of 8 slots (4 slots per key, a power of two of
 * buckets); a key hashes (FNV-1a) to one bucket; every write takes a version from one counter
 * (never 0).
 *
 * No live entry is ever evicted: a new key takes an empty slot of its bucket while the table
 * holds fewer than `max_keys` keys (expired entries of the next 8 buckets are cleared to make
 * room), or the slot of an entry that has expired. An entry expires
 * only when its value says so: `~<unix time in ms>:<anything>` expires at that time (a token
 * bucket writes the time it is full again). Otherwise a new key finds the table full: `set`
 * answers AMBIT_ST_FULL (nothing stored), `add` too. Callers decide what full means (a rate
 * limit counts the request as over its limit).
 *
 * Trust: the directory must be the proxy user's and not writable by group or others (no
 * symlink), a table file the proxy user's with mode 0600; anything else is refused at open with
 * the path and what to do. The geometry is checked once at open against the file's size; every
 * length read from a slot is checked before use (a damaged entry is AMBIT_ST_ECORRUPT, never a
 * read or write out of bounds).
 *
 * Locking: one process-shared, robust pthread mutex per bucket, held for the copy of one
 * entry. A process that dies holding one (SIGKILL, OOM kill) leaves it to the next locker
 * (EOWNERDEAD), which carries on: a write clears its slot's version first and sets it last, so
 * an interrupted write loses that entry and never leaves a torn one. A lock is waited for at
 * most AMBIT_ST_LOCK_WAIT_MS (a stuck or foreign holder): the call fails with AMBIT_ST_ELOCK
 * (ETIMEDOUT, and the holder's thread id in ambit_st_last_lock_holder) instead of hanging.
 */
#ifndef AMBIT_SHARED_TABLE_H
#define AMBIT_SHARED_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define AMBIT_ST_MAX_KEY 128
#define AMBIT_ST_MAX_VALUE 256
#define AMBIT_ST_MAX_SCOPE 255
#define AMBIT_ST_MAX_KEYS 262144u
#define AMBIT_ST_DEFAULT_KEYS 4096u
#define AMBIT_ST_LOCK_WAIT_MS 20

#if defined(__GNUC__)
#define AMBIT_ST_API __attribute__((visibility("hidden")))
#else
#define AMBIT_ST_API
#endif

typedef struct ambit_st ambit_st;

/* What a call returns: 0 or a positive answer, or one of these. */
enum {
  AMBIT_ST_OK = 0,
  AMBIT_ST_ABSENT = 1,     /* get: no such key */
  AMBIT_ST_CONFLICT = 2,   /* set: the entry's version was not the one given */
  AMBIT_ST_FULL = 3,       /* set, add: a new key, and no room for it (see the rules above); nothing stored */
  AMBIT_ST_EKEY = -1,      /* a key of 0 or more than AMBIT_ST_MAX_KEY bytes */
  AMBIT_ST_EVALUE = -2,    /* a value of more than AMBIT_ST_MAX_VALUE bytes */
  AMBIT_ST_EDELTA = -3,    /* add: a delta that is not a finite number */
  AMBIT_ST_ELOCK = -4,     /* a bucket lock failed or timed out (errno-like code in ambit_st_last_lock_error) */
  AMBIT_ST_ECORRUPT = -5,  /* the file is damaged: a length or a lock out of bounds */
};

/*
 * Opens the table of `scope` in `dir` (which must exist), creating and initialising its file on
 * first use, sized for `max_keys` (1..AMBIT_ST_MAX_KEYS; an existing file keeps its size). Every
 * call for the same file in one process returns the same table (mapped once, kept until the
 * process exits). On failure returns NULL and writes one line saying why and what to do into
 * `why` (at most `why_len` bytes).
 */
AMBIT_ST_API ambit_st *ambit_st_open(const char *dir, const char *scope, uint32_t max_keys, char *why, size_t why_len);

/* How many keys the table holds at most (from its file). */
AMBIT_ST_API uint32_t ambit_st_max_keys(const ambit_st *t);

/* The file behind a table (for messages and dumps). */
AMBIT_ST_API const char *ambit_st_path(const ambit_st *t);

/* get: AMBIT_ST_OK with the value (not NUL-terminated) and its version, AMBIT_ST_ABSENT, or an error. */
AMBIT_ST_API int ambit_st_get(ambit_st *t, const char *key, size_t key_len, char value[AMBIT_ST_MAX_VALUE],
                              size_t *value_len, uint32_t *version);

/* Compare-and-set: stores the value if the entry's version is `version` (0: the key must be absent). */
AMBIT_ST_API int ambit_st_set(ambit_st *t, const char *key, size_t key_len, const char *value, size_t value_len,
                              uint32_t version);

/* Adds trunc(delta) to the integer stored at `key` (absent or not a safe integer: 0); `*result` is the sum.
 * AMBIT_ST_FULL when the key is new and there is no room for it. */
AMBIT_ST_API int ambit_st_add(ambit_st *t, const char *key, size_t key_len, double delta, double *result);

/* The error of the last AMBIT_ST_ELOCK on this thread (an errno value). */
AMBIT_ST_API int ambit_st_last_lock_error(void);

/* The thread id that held the lock of the last AMBIT_ST_ELOCK on this thread (0: unknown). */
AMBIT_ST_API int ambit_st_last_lock_holder(void);

/*
 * Locks the bucket of `key` and returns without unlocking it. Only for tests of a process that
 * dies holding a lock; never called by the proxy.
 */
AMBIT_ST_API int ambit_st_hold_bucket_for_test(ambit_st *t, const char *key, size_t key_len);

#endif
