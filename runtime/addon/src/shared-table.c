/*
 * The shared table in a mapped file: see shared-table.h for what it is and its rules.
 *
 * File layout (all native-endian; a file is only ever shared by processes of one machine):
 *
 *   header     magic, layout, geometry, the version counter, the scope's name, max keys, keys in use
 *   locks      `buckets` robust process-shared mutexes, one per 64-byte line
 *   slots      `buckets` x SLOTS entries: version (0: empty), key length, value length, key, value
 *
 * A file is trusted no further than its checks: the directory and the file must be the proxy
 * user's own and closed to others; the geometry is read once, checked against the file's size and
 * kept in this process (never re-read); every length read from a slot is checked before use; a
 * lock whose kind is not the one this code made, or that stays held past LOCK_WAIT_MS, fails the
 * call instead of hanging it.
 */
#include "shared-table.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "AMBIT-ST"
#define LAYOUT 2u
#define SLOTS 8u
/* Buckets per key of max_keys: 4 slots per key, so a bucket fills long before the table does. */
#define SLOTS_PER_KEY 4u
#define MIN_BUCKETS 8u
/* Buckets after a full one whose expired entries a new key may clear. */
#define SWEEP_BUCKETS 8u
#define MAX_BUCKETS (AMBIT_ST_MAX_KEYS * SLOTS_PER_KEY / SLOTS)
#define HEADER_BYTES 512u
#define LOCK_STRIDE 64u
#define MAX_SAFE_INTEGER 9007199254740991.0

struct header {
  char magic[8];
  uint32_t layout;
  uint32_t buckets;
  uint32_t slots;
  uint32_t key_max;
  uint32_t value_max;
  uint32_t versions; /* the last version handed out (atomic) */
  uint32_t ready;    /* 1 once initialised (written last, under the file lock) */
  uint32_t scope_len;
  char scope[AMBIT_ST_MAX_SCOPE + 1];
  uint32_t max_keys; /* how many keys the table may hold */
  uint32_t keys;     /* slots ever claimed by a key (atomic; an expired entry's slot is reused) */
};

struct slot {
  uint32_t version; /* 0: empty */
  uint16_t key_len;
  uint16_t value_len;
  char key[AMBIT_ST_MAX_KEY];
  char value[AMBIT_ST_MAX_VALUE];
};

_Static_assert(sizeof(struct header) <= HEADER_BYTES, "header fits its reserved bytes");
_Static_assert(sizeof(pthread_mutex_t) <= LOCK_STRIDE, "a mutex fits its line");

#define LOCKS_OFFSET ((size_t)HEADER_BYTES)

static size_t slots_offset(uint32_t buckets) { return LOCKS_OFFSET + (size_t)buckets * LOCK_STRIDE; }
static size_t file_bytes(uint32_t buckets) { return slots_offset(buckets) + (size_t)buckets * SLOTS * sizeof(struct slot); }

/* The buckets of a table for `max_keys` keys: a power of two, MIN_BUCKETS..MAX_BUCKETS. */
static uint32_t buckets_for(uint32_t max_keys) {
  uint32_t want = (uint32_t)(((uint64_t)max_keys * SLOTS_PER_KEY + SLOTS - 1) / SLOTS), b = MIN_BUCKETS;
  while (b < want && b < MAX_BUCKETS) b <<= 1;
  return b;
}

struct ambit_st {
  struct ambit_st *next;
  dev_t dev;
  ino_t ino;
  char *path;
  unsigned char *base;
  /* The geometry, read and checked once at open: never read from the file again. */
  uint32_t buckets;
  uint32_t max_keys;
  size_t bytes;
};

/* Tables this process has mapped, by file identity: each is mapped once and kept. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ambit_st *registry;
static __thread int last_lock_error;
static __thread int last_lock_holder;

static struct header *header_of(ambit_st *t) { return (struct header *)t->base; }

static pthread_mutex_t *lock_of(ambit_st *t, uint32_t bucket) {
  return (pthread_mutex_t *)(t->base + LOCKS_OFFSET + (size_t)bucket * LOCK_STRIDE);
}

static struct slot *slot_of(ambit_st *t, uint32_t bucket, uint32_t i) {
  return (struct slot *)(t->base + slots_offset(t->buckets)) + (size_t)bucket * SLOTS + i;
}

static uint32_t fnv1a32(const char *bytes, size_t len) {
  uint32_t h = 0x811c9dc5u;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)bytes[i]) * 0x01000193u;
  return h;
}

static uint64_t fnv1a64(const char *bytes, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)bytes[i]) * 0x100000001b3ull;
  return h;
}

/* ---- opening ---------------------------------------------------------------------------------- */

static void say(char *why, size_t why_len, const char *fmt, const char *a, const char *b) {
  if (why && why_len > 0) snprintf(why, why_len, fmt, a, b);
}

/* The kind glibc gives a robust process-shared mutex: a lock in a file must have it (see lock_ok). */
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;
static int robust_kind;

static void robust_attr(pthread_mutexattr_t *attr) {
  pthread_mutexattr_init(attr);
  pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST);
}

static void learn_kind(void) {
#ifdef __GLIBC__
  pthread_mutexattr_t attr;
  robust_attr(&attr);
  pthread_mutex_t m;
  pthread_mutex_init(&m, &attr);
  robust_kind = m.__data.__kind;
  pthread_mutex_destroy(&m);
  pthread_mutexattr_destroy(&attr);
#endif
}

/* False when a lock's bytes are not a robust process-shared mutex (a damaged or crafted file). */
static bool lock_ok(pthread_mutex_t *m) {
#ifdef __GLIBC__
  pthread_once(&kind_once, learn_kind);
  return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == robust_kind;
#else
  (void)m;
  return true;
#endif
}

static int init_file(int fd, const char *scope, size_t scope_len, uint32_t max_keys) {
  uint32_t buckets = buckets_for(max_keys);
  size_t bytes = file_bytes(buckets);
  /* Emptied first: whatever an unfinished creator left is zeroes (every slot empty). */
  if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)bytes) != 0) return errno;
  unsigned char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno;
  pthread_mutexattr_t attr;
  robust_attr(&attr);
  int err = 0;
  for (uint32_t b = 0; b < buckets && err == 0; b++) {
    err = pthread_mutex_init((pthread_mutex_t *)(base + LOCKS_OFFSET + (size_t)b * LOCK_STRIDE), &attr);
  }
  pthread_mutexattr_destroy(&attr);
  if (err == 0) {
    struct header *h = (struct header *)base;
    memcpy(h->magic, MAGIC, sizeof h->magic);
    h->layout = LAYOUT;
    h->buckets = buckets;
    h->slots = SLOTS;
    h->key_max = AMBIT_ST_MAX_KEY;
    h->value_max = AMBIT_ST_MAX_VALUE;
    h->versions = 0;
    h->scope_len = (uint32_t)scope_len;
    memcpy(h->scope, scope, scope_len);
    h->max_keys = max_keys;
    h->keys = 0;
    __atomic_store_n(&h->ready, 1u, __ATOMIC_RELEASE);
  }
  munmap(base, bytes);
  return err;
}

/* Why an existing file is not a table this code can use, or NULL. `h` is a copy read from the file. */
static const char *check_file(const struct header *h, off_t size, const char *scope, size_t scope_len) {
  if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0) return "is not an Ambit shared table";
  if (h->ready != 1u) return "was never finished by the process that created it";
  if (h->layout != LAYOUT || h->slots != SLOTS || h->key_max != AMBIT_ST_MAX_KEY || h->value_max != AMBIT_ST_MAX_VALUE)
    return "has another layout (written by another Ambit version)";
  if (h->buckets < MIN_BUCKETS || h->buckets > MAX_BUCKETS || (h->buckets & (h->buckets - 1)) != 0 || h->max_keys == 0 ||
      h->max_keys > AMBIT_ST_MAX_KEYS || (size_t)size != file_bytes(h->buckets))
    return "is damaged (its geometry does not match its size)";
  if (h->scope_len != scope_len || scope_len > AMBIT_ST_MAX_SCOPE || memcmp(h->scope, scope, scope_len) != 0)
    return "belongs to another scope (its name's hash collides)";
  return NULL;
}

/* Why the directory (open as `dirfd`) may not hold tables, or NULL: it must be the proxy user's and closed to others' writes. */
static const char *check_dir(int dirfd, char *buf, size_t len) {
  struct stat st;
  if (fstat(dirfd, &st) != 0) return strerror(errno);
  if (st.st_uid != geteuid()) {
    snprintf(buf, len, "is owned by uid %u, not by the proxy's user (uid %u)", (unsigned)st.st_uid, (unsigned)geteuid());
    return buf;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(buf, len, "is writable by group or others (mode %03o)", (unsigned)(st.st_mode & 0777));
    return buf;
  }
  return NULL;
}

/* Why a table file may not be used, or NULL: a regular file of the proxy's user, closed to everyone else. */
static const char *check_owner(const struct stat *st, char *buf, size_t len) {
  if (!S_ISREG(st->st_mode)) return "is not a regular file";
  if (st->st_uid != geteuid()) {
    snprintf(buf, len, "is owned by uid %u, not by the proxy's user (uid %u)", (unsigned)st->st_uid, (unsigned)geteuid());
    return buf;
  }
  if (st->st_mode & 0077) {
    snprintf(buf, len, "is open to group or others (mode %03o, must be 600)", (unsigned)(st->st_mode & 0777));
    return buf;
  }
  return NULL;
}

ambit_st *ambit_st_open(const char *dir, const char *scope, uint32_t max_keys, char *why, size_t why_len) {
  size_t scope_len = strlen(scope);
  if (max_keys == 0 || max_keys > AMBIT_ST_MAX_KEYS) {
    char n[24];
    snprintf(n, sizeof n, "%u", (unsigned)max_keys);
    say(why, why_len, "shared table of \"%.64s\": maxKeys must be 1 to 262144, got %s", scope, n);
    return NULL;
  }
  if (scope_len == 0 || scope_len > AMBIT_ST_MAX_SCOPE) {
    say(why, why_len, "shared table scope \"%.64s\"%s must be 1 to 255 bytes", scope, scope_len > 64 ? "…" : "");
    return NULL;
  }
  char name[32], path[4096];
  snprintf(name, sizeof name, "%016llx.table", (unsigned long long)fnv1a64(scope, scope_len));
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof path) {
    say(why, why_len, "shared table directory %.200s%s: path too long", dir, "");
    return NULL;
  }

  pthread_mutex_lock(&registry_lock);
  ambit_st *t = NULL;
  int fd = -1;
  char detail[512], buf[128];
  /* The directory itself must not be a symlink, nor anyone else's, nor writable by others. */
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) {
    snprintf(detail, sizeof detail, "%s; the directory must exist, be a directory (not a symlink) and be the proxy's", strerror(errno));
    say(why, why_len, "cannot open shared directory %s: %s", dir, detail);
    goto out;
  }
  const char *unsafe = check_dir(dirfd, buf, sizeof buf);
  if (unsafe) {
    snprintf(detail, sizeof detail, "%s; another user could plant or change tables there: make it 0700 and owned by the proxy's user, or set AMBIT_SHARED_DIR to one that is", unsafe);
    say(why, why_len, "refusing shared directory %s: it %s", dir, detail);
    goto out;
  }
  fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    snprintf(detail, sizeof detail, "%s; the directory must exist and be writable by the proxy", strerror(errno));
    say(why, why_len, "cannot open shared table %s: %s", path, detail);
    goto out;
  }
  /* One process initialises a new file; the others wait here, then see it ready. */
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {}
  struct stat st;
  if (fstat(fd, &st) != 0) {
    say(why, why_len, "cannot stat shared table %s: %s", path, strerror(errno));
    goto out;
  }
  unsafe = check_owner(&st, buf, sizeof buf);
  if (unsafe) {
    snprintf(detail, sizeof detail, "%s; it was not made by this proxy: remove it (the proxy makes a new one)", unsafe);
    say(why, why_len, "refusing shared table %s: it %s", path, detail);
    goto out;
  }
  for (ambit_st *it = registry; it; it = it->next) {
    if (it->dev == st.st_dev && it->ino == st.st_ino) {
      t = it;
      goto out;
    }
  }
  /* A file whose creator died before finishing it (size 0, or not marked ready) is initialised
     again: nobody can have used it, since opening checks the mark under this same file lock. */
  struct header peek = {0};
  bool whole = st.st_size >= (off_t)sizeof peek && pread(fd, &peek, sizeof peek, 0) == (ssize_t)sizeof peek;
  bool unfinished = st.st_size == 0 ||
                    (whole && peek.ready == 0 && (peek.magic[0] == 0 || memcmp(peek.magic, MAGIC, sizeof peek.magic) == 0));
  if (unfinished) {
    int err = init_file(fd, scope, scope_len, max_keys);
    if (err != 0) {
      say(why, why_len, "cannot create shared table %s: %s (is the directory's filesystem full?)", path, strerror(err));
      goto out;
    }
    if (fstat(fd, &st) != 0 || pread(fd, &peek, sizeof peek, 0) != (ssize_t)sizeof peek) {
      say(why, why_len, "cannot read back shared table %s: %s", path, strerror(errno));
      goto out;
    }
  }
  /* Checked once, from a copy: the geometry used from now on is this process's, not the file's. */
  const char *bad = whole || unfinished ? check_file(&peek, st.st_size, scope, scope_len) : "is not an Ambit shared table";
  if (bad) {
    snprintf(detail, sizeof detail, "%s; remove it, or give the proxy a new shared directory", bad);
    say(why, why_len, "shared table %s %s", path, detail);
    goto out;
  }
  size_t bytes = file_bytes(peek.buckets);
  unsigned char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    say(why, why_len, "cannot map shared table %s: %s", path, strerror(errno));
    goto out;
  }
  for (uint32_t b = 0; b < peek.buckets; b++) {
    if (!lock_ok((pthread_mutex_t *)(base + LOCKS_OFFSET + (size_t)b * LOCK_STRIDE))) {
      munmap(base, bytes);
      say(why, why_len, "shared table %s is damaged (a bucket lock is not one this proxy made); %s", path,
          "remove it, or give the proxy a new shared directory");
      goto out;
    }
  }
  t = calloc(1, sizeof *t);
  if (t) t->path = strdup(path);
  if (!t || !t->path) {
    munmap(base, bytes);
    free(t);
    t = NULL;
    say(why, why_len, "cannot open shared table %s: %s", path, strerror(ENOMEM));
    goto out;
  }
  t->dev = st.st_dev;
  t->ino = st.st_ino;
  t->base = base;
  t->buckets = peek.buckets;
  t->max_keys = peek.max_keys;
  t->bytes = bytes;
  t->next = registry;
  registry = t;
out:
  if (fd >= 0) {
    /* Unlock explicitly: the mapping keeps the open file (and with it a flock) alive past close(). */
    flock(fd, LOCK_UN);
    close(fd);
  }
  if (dirfd >= 0) close(dirfd);
  pthread_mutex_unlock(&registry_lock);
  return t;
}

const char *ambit_st_path(const ambit_st *t) { return t->path; }

uint32_t ambit_st_max_keys(const ambit_st *t) { return t->max_keys; }

/* ---- operations ------------------------------------------------------------------------------- */

static int lock_bucket(ambit_st *t, uint32_t bucket) {
  pthread_mutex_t *m = lock_of(t, bucket);
  if (!lock_ok(m)) {
    last_lock_error = EINVAL;
    last_lock_holder = 0;
    return AMBIT_ST_ECORRUPT;
  }
  /* Bounded: a lock is held for one entry's copy; one held longer is a stuck or foreign process. */
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_nsec += (long)AMBIT_ST_LOCK_WAIT_MS * 1000000L;
  until.tv_sec += until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  int r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &until);
  if (r == EOWNERDEAD) {
    /* Its holder died mid-operation; every slot is whole or empty (see write_slot). */
    r = pthread_mutex_consistent(m);
  }
  if (r != 0) {
    last_lock_error = r;
#ifdef __GLIBC__
    last_lock_holder = __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED);
#endif
    return AMBIT_ST_ELOCK;
  }
  return AMBIT_ST_OK;
}

static void unlock_bucket(ambit_st *t, uint32_t bucket) { pthread_mutex_unlock(lock_of(t, bucket)); }

static uint32_t bucket_of(ambit_st *t, const char *key, size_t key_len) { return fnv1a32(key, key_len) & (t->buckets - 1); }

/* The slot holding `key` (of at most AMBIT_ST_MAX_KEY bytes, so a matching length is in bounds). */
static struct slot *find(ambit_st *t, uint32_t bucket, const char *key, size_t key_len) {
  for (uint32_t i = 0; i < SLOTS; i++) {
    struct slot *s = slot_of(t, bucket, i);
    uint16_t len = __atomic_load_n(&s->key_len, __ATOMIC_RELAXED);
    if (s->version != 0 && len == key_len && memcmp(s->key, key, key_len) == 0) return s;
  }
  return NULL;
}

/* A slot's value length, read once; above AMBIT_ST_MAX_VALUE the file was damaged. */
static int value_len_of(const struct slot *s, size_t *len) {
  uint16_t n = __atomic_load_n(&s->value_len, __ATOMIC_RELAXED);
  if (n > AMBIT_ST_MAX_VALUE) return AMBIT_ST_ECORRUPT;
  *len = n;
  return AMBIT_ST_OK;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* True when the entry's value says it may go: `~<unix ms>:...` with that time passed (see shared-table.h). */
static bool expired(const struct slot *s, uint64_t now) {
  size_t len;
  if (value_len_of(s, &len) != AMBIT_ST_OK || len < 3 || s->value[0] != '~') return false;
  uint64_t at = 0;
  size_t i = 1;
  for (; i < len && i < 18 && s->value[i] >= '0' && s->value[i] <= '9'; i++) at = at * 10 + (uint64_t)(s->value[i] - '0');
  return i > 1 && i < len && s->value[i] == ':' && at <= now;
}

/* Counts one more key in the table, unless it holds max_keys already. */
static bool take_key(ambit_st *t) {
  uint32_t *keys = &header_of(t)->keys, n = __atomic_load_n(keys, __ATOMIC_RELAXED);
  do {
    if (n >= t->max_keys) return false;
  } while (!__atomic_compare_exchange_n(keys, &n, n + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return true;
}

/*
 * Empties the expired entries of the SWEEP_BUCKETS buckets after `bucket`, each only if its lock
 * is free at once (never a wait while holding `bucket`'s: no lock order to get wrong). Returns how many.
 */
static uint32_t sweep(ambit_st *t, uint32_t bucket, uint64_t now) {
  uint32_t freed = 0;
  for (uint32_t i = 1; i <= SWEEP_BUCKETS && i < t->buckets; i++) {
    uint32_t b = (bucket + i) & (t->buckets - 1);
    pthread_mutex_t *m = lock_of(t, b);
    if (!lock_ok(m)) continue;
    int r = pthread_mutex_trylock(m);
    if (r == EOWNERDEAD) r = pthread_mutex_consistent(m);
    if (r != 0) continue;
    for (uint32_t j = 0; j < SLOTS; j++) {
      struct slot *s = slot_of(t, b, j);
      if (s->version != 0 && expired(s, now)) {
        __atomic_store_n(&s->version, 0u, __ATOMIC_RELEASE);
        __atomic_sub_fetch(&header_of(t)->keys, 1u, __ATOMIC_RELAXED);
        freed++;
      }
    }
    pthread_mutex_unlock(m);
  }
  return freed;
}

/*
 * A slot for a new key in its bucket: one whose entry has expired, else an empty one while the
 * table holds fewer than max_keys keys (clearing expired entries of the next buckets to make
 * room), else NULL (full). A live entry is never evicted.
 */
static struct slot *claim(ambit_st *t, uint32_t bucket) {
  struct slot *empty = NULL;
  uint64_t now = now_ms();
  for (uint32_t i = 0; i < SLOTS; i++) {
    struct slot *s = slot_of(t, bucket, i);
    if (s->version == 0) {
      if (!empty) empty = s;
    } else if (expired(s, now)) {
      return s;
    }
  }
  if (!empty) return NULL;
  return take_key(t) || (sweep(t, bucket, now) > 0 && take_key(t)) ? empty : NULL;
}

static uint32_t next_version(ambit_st *t) {
  uint32_t v;
  do v = __atomic_add_fetch(&header_of(t)->versions, 1u, __ATOMIC_RELAXED);
  while (v == 0);
  return v;
}

/* Empties the slot, fills it, then gives it its version: cut short, it is empty, never torn. */
static void write_slot(ambit_st *t, struct slot *s, const char *key, size_t key_len, const char *value,
                       size_t value_len) {
  __atomic_store_n(&s->version, 0u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  memcpy(s->key, key, key_len);
  memcpy(s->value, value, value_len);
  s->key_len = (uint16_t)key_len;
  s->value_len = (uint16_t)value_len;
  __atomic_store_n(&s->version, next_version(t), __ATOMIC_RELEASE);
}

static int check_key(size_t key_len) {
  return key_len == 0 || key_len > AMBIT_ST_MAX_KEY ? AMBIT_ST_EKEY : AMBIT_ST_OK;
}

int ambit_st_get(ambit_st *t, const char *key, size_t key_len, char value[AMBIT_ST_MAX_VALUE], size_t *value_len,
                 uint32_t *version) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  uint32_t bucket = bucket_of(t, key, key_len);
  int r = lock_bucket(t, bucket);
  if (r) return r;
  struct slot *s = find(t, bucket, key, key_len);
  size_t len = 0;
  r = s ? value_len_of(s, &len) : AMBIT_ST_ABSENT;
  if (r == AMBIT_ST_OK) {
    memcpy(value, s->value, len);
    *value_len = len;
    *version = s->version;
  }
  unlock_bucket(t, bucket);
  return r;
}

int ambit_st_set(ambit_st *t, const char *key, size_t key_len, const char *value, size_t value_len, uint32_t version) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  if (value_len > AMBIT_ST_MAX_VALUE) return AMBIT_ST_EVALUE;
  uint32_t bucket = bucket_of(t, key, key_len);
  int r = lock_bucket(t, bucket);
  if (r) return r;
  struct slot *s = find(t, bucket, key, key_len);
  r = AMBIT_ST_CONFLICT;
  if ((s ? s->version : 0u) == version) {
    struct slot *to = s ? s : claim(t, bucket);
    if (to) write_slot(t, to, key, key_len, value, value_len);
    r = to ? AMBIT_ST_OK : AMBIT_ST_FULL;
  }
  unlock_bucket(t, bucket);
  return r;
}

/* The integer a value holds: an optional minus sign and decimal digits, within ±(2^53 - 1); else 0. */
static double integer_of(const char *value, size_t len) {
  size_t i = len > 0 && value[0] == '-' ? 1 : 0;
  if (i == len || len > 17) return 0;
  double n = 0;
  for (; i < len; i++) {
    if (value[i] < '0' || value[i] > '9') return 0;
    n = n * 10 + (value[i] - '0');
  }
  if (n > MAX_SAFE_INTEGER) return 0;
  return value[0] == '-' ? -n : n;
}

int ambit_st_add(ambit_st *t, const char *key, size_t key_len, double delta, double *result) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  if (!isfinite(delta)) return AMBIT_ST_EDELTA;
  double d = trunc(delta);
  uint32_t bucket = bucket_of(t, key, key_len);
  int r = lock_bucket(t, bucket);
  if (r) return r;
  struct slot *s = find(t, bucket, key, key_len);
  size_t len = 0;
  r = s ? value_len_of(s, &len) : AMBIT_ST_OK;
  struct slot *to = s ? s : claim(t, bucket);
  if (r == AMBIT_ST_OK && !to) r = AMBIT_ST_FULL;
  if (r == AMBIT_ST_OK) {
    double next = (s ? integer_of(s->value, len) : 0) + d;
    if (next == 0) next = 0; /* no "-0" */
    char text[40];
    int n = fabs(next) < 1e21 ? snprintf(text, sizeof text, "%.0f", next) : snprintf(text, sizeof text, "%.17g", next);
    write_slot(t, to, key, key_len, text, (size_t)n);
    *result = next;
  }
  unlock_bucket(t, bucket);
  return r;
}

int ambit_st_last_lock_error(void) { return last_lock_error; }

int ambit_st_last_lock_holder(void) { return last_lock_holder; }

int ambit_st_hold_bucket_for_test(ambit_st *t, const char *key, size_t key_len) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  return lock_bucket(t, bucket_of(t, key, key_len));
}
