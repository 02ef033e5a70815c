#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_mkdir_p(const char *path, mode_t mode) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return -ENAMETOOLONG;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

int util_write_file(const char *path, const void *data, size_t len, mode_t mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return -errno;
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      unlink(tmp);
      return -e;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || close(fd) < 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  return 0;
}

char *util_read_file(const char *path, size_t max, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n > max) {
      free(buf);
      buf = NULL;
      errno = EFBIG;
      break;
    }
    if (got == 0)
      break;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  int e = errno;
  if (buf && ferror(f)) {
    free(buf);
    buf = NULL;
    e = EIO;
  }
  fclose(f);
  if (!buf) {
    errno = e;
    return NULL;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

char *util_path_join(const char *a, const char *b) {
  size_t la = strlen(a);
  bool slash = la > 0 && a[la - 1] == '/';
  char *out = malloc(la + strlen(b) + 2);
  if (out)
    sprintf(out, "%s%s%s", a, slash ? "" : "/", b);
  return out;
}

int util_state_dir(char *buf, size_t len) {
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg && xdg[0] == '/')
    n = snprintf(buf, len, "%s/cadre", xdg);
  else if (home && home[0])
    n = snprintf(buf, len, "%s/.local/state/cadre", home);
  else
    n = snprintf(buf, len, "/tmp/cadre-%d", (int)getuid());
  return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int util_exe_dir(char *buf, size_t len) {
  ssize_t n = readlink("/proc/self/exe", buf, len - 1);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (slash)
    *slash = '\0';
  return 0;
}

void util_random_hex(char *buf, size_t nbytes) {
  unsigned char raw[64];
  if (nbytes > sizeof raw)
    nbytes = sizeof raw;
  randombytes_buf(raw, nbytes);
  sodium_bin2hex(buf, nbytes * 2 + 1, raw, nbytes);
}

void util_hostname(char *buf, size_t len) {
  if (gethostname(buf, len) < 0 || !buf[0])
    snprintf(buf, len, "localhost");
  buf[len - 1] = '\0';
}

size_t util_utf8_seq(const unsigned char *s, size_t n) {
  if (n == 0)
    return 0;
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t k;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    k = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    k = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4)
    k = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else
    return 0;
  if (n < k || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < k; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return k;
}

bool util_utf8_valid(const char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint64_t w;
    if (i + 8 <= len && (memcpy(&w, s + i, 8), !(w & UINT64_C(0x8080808080808080)))) {
      i += 8; /* eight ASCII bytes at a time */
      continue;
    }
    size_t n = util_utf8_seq((const unsigned char *)s + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/* The one piece of state a signal handler may touch: set by SIGINT/SIGTERM. */
static volatile int stop_requested;

static void on_stop_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static volatile int hup_requested;

static void on_hup_signal(int sig) {
  (void)sig;
  hup_requested = 1;
}

volatile int *util_hup_signal(void) {
  struct sigaction sa = {.sa_handler = on_hup_signal};
  sigaction(SIGHUP, &sa, NULL);
  return &hup_requested;
}

volatile int *util_stop_signals(void) {
  struct sigaction sa = {.sa_handler = on_stop_signal};
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGPIPE, &ign, NULL);
  return &stop_requested;
}

int util_common_option(int c, const char *prog, void (*usage)(FILE *), bool *log_json, bool *verbose) {
  if (c == 'J' && log_json)
    *log_json = true;
  else if (c == 'v' && verbose)
    *verbose = true;
  else if (c == 'V')
    printf("%s %s\n", prog, CADRE_VERSION);
  else if (c == 'h')
    usage(stdout);
  else
    usage(stderr);
  if ((c == 'J' && log_json) || (c == 'v' && verbose))
    return -1;
  return c == 'V' || c == 'h' ? 0 : 2;
}

ssize_t util_read(int fd, void *buf, size_t n) {
  ssize_t r;
  while ((r = read(fd, buf, n)) < 0 && errno == EINTR)
    ;
  return r;
}

ssize_t util_read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = util_read(fd, (char *)buf + got, n - got);
    if (r < 0)
      return -errno;
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

// Frees a NULL-terminated array of strings (wiped first when asked).
void util_strv_free(char **list, bool wipe) {
  for (size_t i = 0; list && list[i]; i++) {
    if (wipe)
      explicit_bzero(list[i], strlen(list[i]));
    free(list[i]);
  }
  free(list);
}
