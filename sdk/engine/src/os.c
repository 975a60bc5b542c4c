/*
 * The operating system, as a filter sees it: nothing.
 *
 * A filter's engine imports only the ambit:filter world. These definitions stand in
 * for the libc functions QuickJS reaches that would otherwise pull WASI imports into
 * the module (clocks, stdio, abort). They are linked before wasi-libc, so its members
 * that need WASI are never taken.
 *
 * - Clocks read 0: a build snapshots the same heap every time, and JavaScript's own
 *   clocks (`Date`, `performance`) are replaced by the SDK with the host's `clock`
 *   capability, or with an error saying to declare it.
 * - Output goes nowhere: QuickJS prints only in debug dumps. String formatting
 *   (snprintf, used for stack traces and messages) is libc's own.
 * - abort() and failed assertions trap: the host reports the trap and replaces the
 *   instance.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  (void)tz;
  tv->tv_sec = 0;
  tv->tv_usec = 0;
  return 0;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
  (void)clock;
  ts->tv_sec = 0;
  ts->tv_nsec = 0;
  return 0;
}

time_t time(time_t *t) {
  if (t) *t = 0;
  return 0;
}

/* Filters run in UTC. */
struct tm *localtime_r(const time_t *restrict t, struct tm *restrict tm) {
  return gmtime_r(t, tm);
}

_Noreturn void abort(void) { __builtin_trap(); }

_Noreturn void __assert_fail(const char *expr, const char *file, int line, const char *func) {
  (void)expr;
  (void)file;
  (void)line;
  (void)func;
  __builtin_trap();
}

_Noreturn void exit(int code) {
  (void)code;
  __builtin_trap();
}

/*
 * stdout and stderr write nowhere. Formatting (vsnprintf and friends) is libc's own;
 * only the FILE back ends that would reach WASI's fd_write are replaced.
 */
size_t __stdio_write(FILE *f, const unsigned char *buf, size_t len) {
  (void)f;
  (void)buf;
  return len;
}

size_t __stdout_write(FILE *f, const unsigned char *buf, size_t len) {
  (void)f;
  (void)buf;
  return len;
}

off_t __stdio_seek(FILE *f, off_t off, int whence) {
  (void)f;
  (void)off;
  (void)whence;
  return -1;
}

int __stdio_close(FILE *f) {
  (void)f;
  return 0;
}

char *getenv(const char *name) {
  (void)name;
  return NULL;
}
