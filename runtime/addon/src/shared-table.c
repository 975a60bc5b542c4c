/*
 * The shared table in a mapped file: see shared-table.h for what it is and its rules.
 *
 * File layout (all native-endian; a file is only ever shared by processes of one machine):
 *
 *   header     magic, layout, geometry, the version counter, the scope's name   (HEADER_BYTES)
 *   locks      BUCKETS robust process-shared mutexes, one per 64-byte line
 *   slots      BUCKETS x SLOTS entries: version (0: empty), key length, value length, key, value
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
#define LAYOUT 1u
#define BUCKETS 512u
#define SLOTS 8u
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
#define SLOTS_OFFSET (LOCKS_OFFSET + (size_t)BUCKETS * LOCK_STRIDE)
#define FILE_BYTES (SLOTS_OFFSET + (size_t)BUCKETS * SLOTS * sizeof(struct slot))

struct ambit_st {
  struct ambit_st *next;
  dev_t dev;
  ino_t ino;
  char *path;
  unsigned char *base;
};

/* Tables this process has mapped, by file identity: each is mapped once and kept. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ambit_st *registry;
static __thread int last_lock_error;

static struct header *header_of(ambit_st *t) { return (struct header *)t->base; }

static pthread_mutex_t *lock_of(ambit_st *t, uint32_t bucket) {
  return (pthread_mutex_t *)(t->base + LOCKS_OFFSET + (size_t)bucket * LOCK_STRIDE);
}

static struct slot *slot_of(ambit_st *t, uint32_t bucket, uint32_t i) {
  return (struct slot *)(t->base + SLOTS_OFFSET) + (size_t)bucket * SLOTS + i;
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

static int init_file(int fd, const char *scope, size_t scope_len) {
  if (ftruncate(fd, (off_t)FILE_BYTES) != 0) return errno;
  unsigned char *base = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int err = 0;
  for (uint32_t b = 0; b < BUCKETS && err == 0; b++) {
    err = pthread_mutex_init((pthread_mutex_t *)(base + LOCKS_OFFSET + (size_t)b * LOCK_STRIDE), &attr);
  }
  pthread_mutexattr_destroy(&attr);
  if (err == 0) {
    struct header *h = (struct header *)base;
    memcpy(h->magic, MAGIC, sizeof h->magic);
    h->layout = LAYOUT;
    h->buckets = BUCKETS;
    h->slots = SLOTS;
    h->key_max = AMBIT_ST_MAX_KEY;
    h->value_max = AMBIT_ST_MAX_VALUE;
    h->versions = 0;
    h->scope_len = (uint32_t)scope_len;
    memcpy(h->scope, scope, scope_len);
    __atomic_store_n(&h->ready, 1u, __ATOMIC_RELEASE);
  }
  munmap(base, FILE_BYTES);
  return err;
}

/* Why an existing file is not a table this code can use, or NULL. */
static const char *check_file(const unsigned char *base, const char *scope, size_t scope_len) {
  const struct header *h = (const struct header *)base;
  if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0) return "is not an Ambit shared table";
  if (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) != 1u) return "was never finished by the process that created it";
  if (h->layout != LAYOUT || h->buckets != BUCKETS || h->slots != SLOTS || h->key_max != AMBIT_ST_MAX_KEY ||
      h->value_max != AMBIT_ST_MAX_VALUE)
    return "has another layout (written by another Ambit version)";
  if (h->scope_len != scope_len || memcmp(h->scope, scope, scope_len) != 0) return "belongs to another scope (its name's hash collides)";
  return NULL;
}

ambit_st *ambit_st_open(const char *dir, const char *scope, char *why, size_t why_len) {
  size_t scope_len = strlen(scope);
  if (scope_len == 0 || scope_len > AMBIT_ST_MAX_SCOPE) {
    say(why, why_len, "shared table scope \"%.64s\"%s must be 1 to 255 bytes", scope, scope_len > 64 ? "…" : "");
    return NULL;
  }
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%016llx.table", dir, (unsigned long long)fnv1a64(scope, scope_len));
  if (n < 0 || (size_t)n >= sizeof path) {
    say(why, why_len, "shared table directory %.200s%s: path too long", dir, "");
    return NULL;
  }

  pthread_mutex_lock(&registry_lock);
  ambit_st *t = NULL;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    char detail[160];
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
  for (ambit_st *it = registry; it; it = it->next) {
    if (it->dev == st.st_dev && it->ino == st.st_ino) {
      t = it;
      goto out;
    }
  }
  /* A file whose creator died before finishing it (size 0, or not marked ready) is initialised
     again: nobody can have used it, since opening checks the mark under this same file lock. */
  struct header peek = {0};
  bool unfinished = st.st_size == 0 ||
                    ((size_t)st.st_size == FILE_BYTES && pread(fd, &peek, sizeof peek, 0) == (ssize_t)sizeof peek &&
                     peek.ready == 0 && (peek.magic[0] == 0 || memcmp(peek.magic, MAGIC, sizeof peek.magic) == 0));
  if (unfinished) {
    int err = init_file(fd, scope, scope_len);
    if (err != 0) {
      say(why, why_len, "cannot create shared table %s: %s (is the directory's filesystem full?)", path, strerror(err));
      goto out;
    }
  } else if ((size_t)st.st_size != FILE_BYTES) {
    say(why, why_len, "shared table %s has the wrong size (written by another Ambit version?); %s", path,
        "remove it, or give the proxy a new shared directory");
    goto out;
  }
  unsigned char *base = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    say(why, why_len, "cannot map shared table %s: %s", path, strerror(errno));
    goto out;
  }
  const char *bad = check_file(base, scope, scope_len);
  if (bad) {
    munmap(base, FILE_BYTES);
    char detail[200];
    snprintf(detail, sizeof detail, "%s; remove it, or give the proxy a new shared directory", bad);
    say(why, why_len, "shared table %s %s", path, detail);
    goto out;
  }
  t = calloc(1, sizeof *t);
  if (t) t->path = strdup(path);
  if (!t || !t->path) {
    munmap(base, FILE_BYTES);
    free(t);
    t = NULL;
    say(why, why_len, "cannot open shared table %s: %s", path, strerror(ENOMEM));
    goto out;
  }
  t->dev = st.st_dev;
  t->ino = st.st_ino;
  t->base = base;
  t->next = registry;
  registry = t;
out:
  if (fd >= 0) {
    /* Unlock explicitly: the mapping keeps the open file (and with it a flock) alive past close(). */
    flock(fd, LOCK_UN);
    close(fd);
  }
  pthread_mutex_unlock(&registry_lock);
  return t;
}

const char *ambit_st_path(const ambit_st *t) { return t->path; }

/* ---- operations ------------------------------------------------------------------------------- */

static int lock_bucket(ambit_st *t, uint32_t bucket) {
  pthread_mutex_t *m = lock_of(t, bucket);
  int r = pthread_mutex_lock(m);
  if (r == EOWNERDEAD) {
    /* Its holder died mid-operation; every slot is whole or empty (see write_slot). */
    r = pthread_mutex_consistent(m);
  }
  if (r != 0) {
    last_lock_error = r;
    return AMBIT_ST_ELOCK;
  }
  return AMBIT_ST_OK;
}

static void unlock_bucket(ambit_st *t, uint32_t bucket) { pthread_mutex_unlock(lock_of(t, bucket)); }

static uint32_t bucket_of(const char *key, size_t key_len) { return fnv1a32(key, key_len) % BUCKETS; }

static struct slot *find(ambit_st *t, uint32_t bucket, const char *key, size_t key_len) {
  for (uint32_t i = 0; i < SLOTS; i++) {
    struct slot *s = slot_of(t, bucket, i);
    if (s->version != 0 && s->key_len == key_len && memcmp(s->key, key, key_len) == 0) return s;
  }
  return NULL;
}

/* An empty slot of the bucket, else its least recently written one. */
static struct slot *claim(ambit_st *t, uint32_t bucket) {
  struct slot *oldest = NULL;
  for (uint32_t i = 0; i < SLOTS; i++) {
    struct slot *s = slot_of(t, bucket, i);
    if (s->version == 0) return s;
    if (!oldest || s->version < oldest->version) oldest = s;
  }
  return oldest;
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
  uint32_t bucket = bucket_of(key, key_len);
  if (lock_bucket(t, bucket)) return AMBIT_ST_ELOCK;
  struct slot *s = find(t, bucket, key, key_len);
  int r = AMBIT_ST_ABSENT;
  if (s) {
    *value_len = s->value_len;
    memcpy(value, s->value, s->value_len);
    *version = s->version;
    r = AMBIT_ST_OK;
  }
  unlock_bucket(t, bucket);
  return r;
}

int ambit_st_set(ambit_st *t, const char *key, size_t key_len, const char *value, size_t value_len, uint32_t version) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  if (value_len > AMBIT_ST_MAX_VALUE) return AMBIT_ST_EVALUE;
  uint32_t bucket = bucket_of(key, key_len);
  if (lock_bucket(t, bucket)) return AMBIT_ST_ELOCK;
  struct slot *s = find(t, bucket, key, key_len);
  int r = AMBIT_ST_CONFLICT;
  if ((s ? s->version : 0u) == version) {
    write_slot(t, s ? s : claim(t, bucket), key, key_len, value, value_len);
    r = AMBIT_ST_OK;
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
  uint32_t bucket = bucket_of(key, key_len);
  if (lock_bucket(t, bucket)) return AMBIT_ST_ELOCK;
  struct slot *s = find(t, bucket, key, key_len);
  double next = (s ? integer_of(s->value, s->value_len) : 0) + d;
  if (next == 0) next = 0; /* no "-0" */
  char text[40];
  int n = fabs(next) < 1e21 ? snprintf(text, sizeof text, "%.0f", next) : snprintf(text, sizeof text, "%.17g", next);
  write_slot(t, s ? s : claim(t, bucket), key, key_len, text, (size_t)n);
  unlock_bucket(t, bucket);
  *result = next;
  return AMBIT_ST_OK;
}

int ambit_st_last_lock_error(void) { return last_lock_error; }

int ambit_st_hold_bucket_for_test(ambit_st *t, const char *key, size_t key_len) {
  if (check_key(key_len)) return AMBIT_ST_EKEY;
  return lock_bucket(t, bucket_of(key, key_len));
}
