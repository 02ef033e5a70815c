/* workspace: confinement of paths to the workspace (see workspace.h). */
#include "workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define WS_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
#define WS_MAX_LINKS 40 /* as the kernel's MAXSYMLINKS */
#define WS_WALK_DEPTH 256

/* ---- setup ---------------------------------------------------------------- */

static char *strip_trailing_slashes(char *s) {
  size_t n = strlen(s);
  while (n > 1 && s[n - 1] == '/')
    s[--n] = '\0';
  return s;
}

/* openat2 as a function; -1 with errno. */
static int sys_openat2(int dirfd, const char *path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
  how.resolve = WS_RESOLVE;
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// Opens the workspace directory, records its paths and probes openat2.
int ws_init(ws_t *ws, const char *path, char *err, size_t errlen) {
  memset(ws, 0, sizeof *ws);
  ws->root_fd = -1;
  if (!path || !*path) {
    snprintf(err, errlen, "no workspace directory given");
    return -1;
  }
  ws->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ws->root_real = ws->root_fd >= 0 ? realpath(path, NULL) : NULL;
  if (ws->root_fd < 0 || !ws->root_real) {
    snprintf(err, errlen, "cannot open workspace directory %s: %s", path, strerror(errno));
    ws_fini(ws);
    return -1;
  }
  if (path[0] == '/') {
    ws->root_given = strip_trailing_slashes(strdup(path));
    if (ws->root_given && strcmp(ws->root_given, ws->root_real) == 0) {
      free(ws->root_given);
      ws->root_given = NULL;
    }
  }
  int fd = sys_openat2(ws->root_fd, ".", O_PATH | O_DIRECTORY);
  ws->openat2 = fd >= 0;
  if (fd >= 0)
    close(fd);
  return 0;
}

// Closes and frees what ws_init made.
void ws_fini(ws_t *ws) {
  if (ws->root_fd >= 0)
    close(ws->root_fd);
  ws->root_fd = -1;
  free(ws->root_real);
  free(ws->root_given);
  ws->root_real = ws->root_given = NULL;
}

/* ---- lexical checks --------------------------------------------------------- */

// Copies path for messages: at most ~160 bytes, control bytes as '?', "..." when cut.
void ws_shown(const char *path, size_t len, char *buf, size_t buflen) {
  size_t max = buflen > 164 ? 160 : (buflen > 4 ? buflen - 4 : 0), n = 0;
  if (!path)
    len = 0;
  for (; n < len && n < max && path[n]; n++)
    buf[n] = ((unsigned char)path[n] < 0x20 || path[n] == 0x7f) ? '?' : path[n];
  bool cut = n < len;
  if (cut) /* do not split a UTF-8 character: back up while the first byte left out continues one */
    while (n > 0 && ((unsigned char)path[n] & 0xC0) == 0x80)
      n--;
  if (buflen == 0)
    return;
  if (cut && n + 4 <= buflen) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n < buflen ? n : buflen - 1] = '\0';
}

// True when the lexical ".." count of rel climbs above its start.
bool ws_lexically_escapes(const char *rel) {
  long depth = 0;
  for (const char *p = rel; *p;) {
    while (*p == '/')
      p++;
    const char *q = p;
    while (*q && *q != '/')
      q++;
    size_t n = (size_t)(q - p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (--depth < 0)
        return true;
    } else if (n > 0 && !(n == 1 && p[0] == '.')) {
      depth++;
    }
    p = q;
  }
  return false;
}

/* The rest of p after root and a '/', "" when p is root, NULL when p is not beneath root. */
static const char *strip_root(const char *p, const char *root) {
  if (!root)
    return NULL;
  size_t n = strlen(root);
  if (n == 1 && root[0] == '/')
    return p + 1;
  if (strncmp(p, root, n) != 0)
    return NULL;
  if (p[n] == '\0')
    return p + n;
  return p[n] == '/' ? p + n + 1 : NULL;
}

// Checks a path from the model and turns it into a workspace-relative path.
int ws_rel(const ws_t *ws, const char *path, size_t len, char **rel, char *err, size_t errlen) {
  char shown[200];
  *rel = NULL;
  if (!path || len == 0) {
    snprintf(err, errlen, "path is empty; give a path relative to the workspace");
    return -1;
  }
  ws_shown(path, len, shown, sizeof shown);
  if (memchr(path, '\0', len)) {
    snprintf(err, errlen, "path \"%s\" contains a NUL byte", shown);
    return -1;
  }
  if (len >= PATH_MAX) {
    snprintf(err, errlen, "path \"%s\" is too long (%zu bytes; the limit is %d)", shown, len, PATH_MAX - 1);
    return -1;
  }
  const char *r = path;
  if (path[0] == '/') {
    r = strip_root(path, ws->root_real);
    if (!r)
      r = strip_root(path, ws->root_given);
  }
  if (r) {
    while (*r == '/')
      r++;
    if (!*r)
      r = ".";
  }
  if (!r || ws_lexically_escapes(r)) {
    snprintf(err, errlen, "path \"%s\" is outside the workspace", shown);
    return -1;
  }
  *rel = strdup(r);
  if (!*rel) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

/* ---- the fallback walk ------------------------------------------------------- */

typedef struct {
  int fds[WS_WALK_DEPTH];
  int top;
  char rest[2 * PATH_MAX];
  int links;
} walk_t;

static void walk_close(walk_t *w) {
  for (int i = 0; i <= w->top; i++)
    if (w->fds[i] >= 0)
      close(w->fds[i]);
  w->top = -1;
}

/* Replaces the walk's remaining path by the link's target followed by after. 0 or -errno. */
static int walk_splice(walk_t *w, int linkfd, const char *after) {
  char target[PATH_MAX];
  ssize_t n = readlinkat(linkfd, "", target, sizeof target - 1);
  if (n < 0)
    return -errno;
  target[n] = '\0';
  if (++w->links > WS_MAX_LINKS)
    return -ELOOP;
  if (target[0] == '/')
    return -EXDEV;
  char tmp[2 * PATH_MAX];
  int len = snprintf(tmp, sizeof tmp, "%s%s%s", target, *after ? "/" : "", after);
  if (len < 0 || (size_t)len >= sizeof tmp)
    return -ENAMETOOLONG;
  memcpy(w->rest, tmp, (size_t)len + 1);
  return 0;
}

enum { WALK_NEXT = 1, WALK_SPLICED = 2 };

/* One component of the walk: name, followed by the components in after
 * (none when last). Returns WALK_NEXT (consumed), WALK_SPLICED (a symlink:
 * w->rest now holds its target and after), 0 with *out opened (the last
 * component), or -errno. */
static int walk_step(walk_t *w, const char *name, const char *after, bool last, int flags, int *out) {
  int cur = w->fds[w->top];
  if (strcmp(name, "..") == 0) {
    if (w->top == 0)
      return -EXDEV;
    close(w->fds[w->top--]);
    return WALK_NEXT;
  }
  int fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (S_ISLNK(st.st_mode)) {
    int rc = walk_splice(w, fd, after);
    close(fd);
    return rc < 0 ? rc : WALK_SPLICED;
  }
  if (!last) {
    if (!S_ISDIR(st.st_mode) || w->top + 1 >= WS_WALK_DEPTH) {
      close(fd);
      return S_ISDIR(st.st_mode) ? -ENAMETOOLONG : -ENOTDIR;
    }
    w->fds[++w->top] = fd;
    return WALK_NEXT;
  }
  close(fd);
  *out = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC);
  return *out >= 0 ? 0 : -errno;
}

/* The next component of w->rest into name and the rest after it into after.
 * false when there is none; -ENAMETOOLONG in *err for an oversized one. */
static bool walk_next(walk_t *w, char *name, char *after, size_t afterlen, int *err) {
  const char *p = w->rest;
  for (;;) {
    while (*p == '/')
      p++;
    if (!*p)
      return false;
    size_t n = strcspn(p, "/");
    if (n > NAME_MAX) {
      *err = -ENAMETOOLONG;
      return false;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    p += n;
    while (*p == '/')
      p++;
    if (strcmp(name, ".") != 0)
      break;
  }
  snprintf(after, afterlen, "%s", p);
  return true;
}

/* openat2(RESOLVE_BENEATH) done by hand: fd or -errno. */
static int walk_open(int root, const char *rel, int flags) {
  walk_t *w = malloc(sizeof *w);
  char *after = malloc(2 * PATH_MAX);
  if (!w || !after) {
    free(w);
    free(after);
    return -ENOMEM;
  }
  w->top = 0;
  w->links = 0;
  w->fds[0] = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  size_t rl = strlen(rel);
  if (rl && rel[rl - 1] == '/')
    flags |= O_DIRECTORY;
  snprintf(w->rest, sizeof w->rest, "%s", rel);
  int result = w->fds[0] < 0 ? -errno : 0;
  while (result == 0) {
    char name[NAME_MAX + 1];
    int err = 0;
    if (!walk_next(w, name, after, 2 * PATH_MAX, &err)) {
      result = err ? err : openat(w->fds[w->top], ".", flags | O_CLOEXEC);
      if (result < 0 && !err)
        result = -errno;
      break;
    }
    int fd = -1, rc = walk_step(w, name, after, !*after, flags, &fd);
    if (rc <= 0) {
      result = rc == 0 ? fd : rc;
      break;
    }
    if (rc == WALK_NEXT)
      memmove(w->rest, after, strlen(after) + 1);
  }
  if (w->fds[0] >= 0)
    walk_close(w);
  free(after);
  free(w);
  return result;
}

/* ---- opening beneath ------------------------------------------------------- */

// Opens rel beneath the workspace with flags (no O_CREAT): fd or -errno.
int ws_open(const ws_t *ws, const char *rel, int flags) {
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
    return -EINVAL;
  if (ws->openat2) {
    for (int i = 0; i < 64; i++) {
      int fd = sys_openat2(ws->root_fd, rel, flags);
      if (fd >= 0)
        return fd;
      if (errno == ENOSYS)
        break;
      if (errno != EAGAIN && errno != EINTR)
        return -errno;
    }
    if (errno != ENOSYS)
      return -EAGAIN;
  }
  return walk_open(ws->root_fd, rel, flags);
}

/* The length of the first n components of rel (with the slashes between them). */
static size_t prefix_len(const char *rel, int n) {
  const char *p = rel, *end = rel;
  for (int i = 0; i < n; i++) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    p += strcspn(p, "/");
    end = p;
  }
  return (size_t)(end - rel);
}

/* mkdir -p beneath: each missing component made with mkdirat in its parent,
 * then the prefix reopened from the root. fd or -errno. */
static int mkdir_beneath(const ws_t *ws, const char *rel) {
  char *prefix = strdup(rel);
  int parent = openat(ws->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!prefix || parent < 0) {
    free(prefix);
    if (parent >= 0)
      close(parent);
    return parent < 0 ? -errno : -ENOMEM;
  }
  for (int i = 1;; i++) {
    size_t n = prefix_len(rel, i);
    if (n == prefix_len(rel, i - 1))
      break;
    memcpy(prefix, rel, n);
    prefix[n] = '\0';
    const char *name = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
    int fd = ws_open(ws, prefix, O_RDONLY | O_DIRECTORY);
    bool plain = strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    if (fd == -ENOENT && plain && (mkdirat(parent, name, 0755) == 0 || errno == EEXIST))
      fd = ws_open(ws, prefix, O_RDONLY | O_DIRECTORY);
    close(parent);
    parent = fd;
    if (fd < 0)
      break;
  }
  free(prefix);
  return parent;
}

// Opens directory rel (O_RDONLY) beneath, making missing ones when create.
int ws_open_dir(const ws_t *ws, const char *rel, bool create) {
  int fd = ws_open(ws, rel, O_RDONLY | O_DIRECTORY);
  if (fd != -ENOENT || !create)
    return fd;
  return mkdir_beneath(ws, rel);
}

/* ---- files to write ------------------------------------------------------------ */

// Closes the target's directory fd.
void ws_target_close(ws_target_t *t) {
  if (t->dirfd >= 0)
    close(t->dirfd);
  t->dirfd = -1;
}

/* Splits path into its directory (dir, "." when none) and its last name. */
static void split_path(const char *path, char *dir, size_t dirlen, const char **base) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, dirlen, ".");
    *base = path;
    return;
  }
  snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
  if (!*dir)
    snprintf(dir, dirlen, "/");
  *base = slash + 1;
}

/* Inspects dirfd/base: 1 for a symlink (its target into cur, joined to dir),
 * 0 for a regular file or nothing, -1 with err for anything else. */
static int target_inspect(ws_target_t *t, const char *dir, const char *base, const char *shown, char *cur, char *err,
                          size_t errlen) {
  if (fstatat(t->dirfd, base, &t->st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return 0;
    ws_strerror(errno, shown, err, errlen);
    return -1;
  }
  if (S_ISLNK(t->st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(t->dirfd, base, target, sizeof target - 1);
    if (n < 0) {
      ws_strerror(errno, shown, err, errlen);
      return -1;
    }
    target[n] = '\0';
    int len =
        strcmp(dir, ".") == 0 ? snprintf(cur, PATH_MAX, "%s", target) : snprintf(cur, PATH_MAX, "%s/%s", dir, target);
    if (target[0] == '/' || ws_lexically_escapes(cur)) {
      ws_strerror(EXDEV, shown, err, errlen);
      return -1;
    }
    if (len < 0 || len >= PATH_MAX) {
      ws_strerror(ENAMETOOLONG, shown, err, errlen);
      return -1;
    }
    return 1;
  }
  if (S_ISDIR(t->st.st_mode) || !S_ISREG(t->st.st_mode)) {
    snprintf(err, errlen, "path \"%s\" is %s", shown,
             S_ISDIR(t->st.st_mode) ? "a directory; give a file name" : "not a regular file");
    return -1;
  }
  t->exists = true;
  return 0;
}

// Resolves a file to write beneath the workspace (following final symlinks).
int ws_target(const ws_t *ws, const char *rel, bool create, const char *shown, ws_target_t *t, char *err,
              size_t errlen) {
  char *cur = malloc(PATH_MAX), *dir = malloc(PATH_MAX);
  int rc = -1;
  memset(t, 0, sizeof *t);
  t->dirfd = -1;
  if (!cur || !dir) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  snprintf(cur, PATH_MAX, "%s", rel);
  for (int hops = 0; hops <= WS_MAX_LINKS; hops++) {
    const char *base;
    split_path(cur, dir, PATH_MAX, &base);
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
      snprintf(err, errlen, "path \"%s\" does not name a file (it ends with '%s')", shown, *base ? base : "/");
      goto out;
    }
    if (strlen(base) > NAME_MAX) {
      ws_strerror(ENAMETOOLONG, shown, err, errlen);
      goto out;
    }
    t->dirfd = ws_open_dir(ws, dir, create);
    if (t->dirfd < 0) {
      ws_strerror(-t->dirfd, shown, err, errlen);
      t->dirfd = -1;
      goto out;
    }
    char basecopy[NAME_MAX + 1];
    snprintf(basecopy, sizeof basecopy, "%s", base);
    int r = target_inspect(t, dir, basecopy, shown, cur, err, errlen);
    if (r <= 0) {
      if (r == 0 && fstat(t->dirfd, &t->dir_st) == 0) {
        snprintf(t->name, sizeof t->name, "%s", basecopy);
        rc = 0;
      } else if (r == 0) {
        ws_strerror(errno, shown, err, errlen);
      }
      goto out;
    }
    ws_target_close(t);
  }
  ws_strerror(ELOOP, shown, err, errlen);
out:
  if (rc != 0)
    ws_target_close(t);
  free(cur);
  free(dir);
  return rc;
}

/* A random 64-bit number for temporary names. */
static uint64_t tmp_random(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&v;
  }
  return v;
}

/* Writes all of data to fd. 0 or -errno. */
static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

// Writes data to dirfd/name atomically (temporary file, fsync, rename, fsync of the directory).
int ws_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bool exact_mode) {
  char tmp[64];
  int fd = -1;
  for (int i = 0; i < 16 && fd < 0; i++) {
    snprintf(tmp, sizeof tmp, WS_TMP_PREFIX "%016llx", (unsigned long long)tmp_random());
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, exact_mode ? 0600 : mode);
    if (fd < 0 && errno != EEXIST)
      return -errno;
  }
  if (fd < 0)
    return -EEXIST;
  int rc = exact_mode && fchmod(fd, mode & 07777) != 0 ? -errno : 0;
  if (rc == 0)
    rc = write_all(fd, data, len);
  if (rc == 0 && fsync(fd) != 0)
    rc = -errno;
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
    rc = -errno;
  if (rc != 0) {
    unlinkat(dirfd, tmp, 0);
    return rc;
  }
  (void)fsync(dirfd); /* best effort: the data is in place either way */
  return 0;
}

// A message for an errno about path shown.
void ws_strerror(int err, const char *shown, char *buf, size_t len) {
  switch (err) {
  case EXDEV: snprintf(buf, len, "path \"%s\" leaves the workspace through a symlink", shown); break;
  case ENOENT: snprintf(buf, len, "no such file: \"%s\"", shown); break;
  case ENOTDIR: snprintf(buf, len, "not a directory: a component of \"%s\" is a file", shown); break;
  case ELOOP:
    snprintf(buf, len, "path \"%s\" has too many levels of symbolic links (or a /proc magic link)", shown);
    break;
  case EACCES:
  case EPERM: snprintf(buf, len, "permission denied: \"%s\"", shown); break;
  case ENAMETOOLONG: snprintf(buf, len, "path \"%s\" is too long", shown); break;
  case EISDIR: snprintf(buf, len, "path \"%s\" is a directory", shown); break;
  case ENOSPC:
  case EDQUOT: snprintf(buf, len, "no space left on the device for \"%s\"", shown); break;
  case EROFS: snprintf(buf, len, "\"%s\" is on a read-only file system", shown); break;
  default: snprintf(buf, len, "cannot use \"%s\": %s", shown, strerror(err)); break;
  }
}
