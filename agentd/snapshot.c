/* snapshot: checkpoints and rollback on the workspace's files (see snapshot.h). */
#include "snapshot.h"
#include "jx.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_COUNT_CAP 1000000 /* files counted before a walk for a snapshot gives up */
#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

/* ---- hashes, base64, names ---------------------------------------------------- */

// Inits libsodium.
int snap_init(void) {
  return sodium_init() < 0 ? -1 : 0;
}

// Hex SHA-256 of data.
void snap_sha256(const void *data, size_t len, char *hex) {
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, data, len);
  sodium_bin2hex(hex, SNAP_HEX_LEN + 1, h, sizeof h);
}

/* Hex SHA-256 of what fd holds from its current offset. 0 or -errno. */
static int sha256_fd(int fd, char *hex) {
  crypto_hash_sha256_state st;
  unsigned char buf[65536], h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_init(&st);
  for (;;) {
    ssize_t n = util_read(fd, buf, sizeof buf);
    if (n < 0)
      return -errno;
    if (n == 0)
      break;
    crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
  }
  crypto_hash_sha256_final(&st, h);
  sodium_bin2hex(hex, SNAP_HEX_LEN + 1, h, sizeof h);
  return 0;
}

/* Opens rel beneath the workspace for reading into *fd (-1 when absent). 0 or -errno. */
static int open_existing(const ws_t *ws, const char *rel, struct stat *st, int *fd) {
  *fd = ws_open(ws, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (*fd == -ENOENT || *fd == -ENOTDIR) {
    *fd = -1;
    return 0;
  }
  if (*fd < 0)
    return *fd;
  if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
    int e = S_ISREG(st->st_mode) ? errno : EINVAL;
    close(*fd);
    *fd = -1;
    return -e;
  }
  return 0;
}

// Hex SHA-256 and mode of the regular file rel ("" and 0 when absent).
int snap_state_file(const ws_t *ws, const char *rel, char *hex, mode_t *mode) {
  struct stat st = {0};
  int fd, rc = open_existing(ws, rel, &st, &fd);
  hex[0] = '\0';
  *mode = 0;
  if (rc < 0 || fd < 0)
    return rc;
  rc = sha256_fd(fd, hex);
  *mode = st.st_mode & 07777;
  close(fd);
  return rc;
}

// Hex SHA-256 of the regular file rel ("" when absent).
int snap_sha256_file(const ws_t *ws, const char *rel, char *hex) {
  mode_t mode;
  return snap_state_file(ws, rel, hex, &mode);
}

// Base64 of data.
char *snap_b64_encode(const void *data, size_t len) {
  size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
  char *out = malloc(n);
  if (out)
    sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_ORIGINAL);
  return out;
}

// Decodes base64 text (padded or not; whitespace ignored).
int snap_b64_decode(const char *text, void **out, size_t *len) {
  size_t tlen = strlen(text), max = tlen / 4 * 3 + 3, n = 0;
  unsigned char *bin = malloc(max + 1);
  if (!bin)
    return -ENOMEM;
  const int variants[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING};
  for (size_t i = 0; i < 2; i++) {
    const char *end = NULL;
    if (sodium_base642bin(bin, max, text, tlen, " \t\r\n", &n, &end, variants[i]) == 0 && end == text + tlen) {
      bin[n] = '\0';
      *out = bin;
      *len = n;
      return 0;
    }
  }
  free(bin);
  return -EINVAL;
}

// True when s is valid UTF-8 without NUL.
bool snap_utf8_ok(const char *s, size_t len) {
  return !memchr(s, 0, len) && util_utf8_valid(s, len);
}

/* s with every byte that is not part of valid UTF-8 as '?', as a JSON string. */
static json_t *lossy_string(const char *s) {
  size_t len = strlen(s);
  if (snap_utf8_ok(s, len))
    return json_string(s);
  char *copy = strdup(s);
  for (size_t i = 0; copy && i < len;) {
    size_t n = util_utf8_seq((const unsigned char *)copy + i, len - i);
    if (n == 0)
      copy[i] = '?';
    i += n ? n : 1;
  }
  json_t *v = copy ? json_string(copy) : NULL;
  free(copy);
  return v;
}

// Lexically normalised copy of a workspace-relative path.
char *snap_norm(const char *rel) {
  size_t len = strlen(rel), n = 0;
  char *out = malloc(len + 1);
  if (!out)
    return NULL;
  for (const char *p = rel; *p;) {
    while (*p == '/')
      p++;
    size_t c = strcspn(p, "/");
    if (c == 2 && p[0] == '.' && p[1] == '.') {
      if (n == 0) {
        free(out);
        return NULL;
      }
      while (n > 0 && out[n - 1] != '/')
        n--;
      if (n > 0)
        n--;
    } else if (c > 0 && !(c == 1 && p[0] == '.')) {
      if (n > 0)
        out[n++] = '/';
      memcpy(out + n, p, c);
      n += c;
    }
    p += c;
  }
  out[n] = '\0';
  return out;
}

/* Splits a normalised path into its directory ("." when none) and its name. */
static void split(const char *norm, char *dir, size_t dirlen, const char **base) {
  const char *slash = strrchr(norm, '/');
  snprintf(dir, dirlen, "%.*s", slash ? (int)(slash - norm) : 1, slash ? norm : ".");
  *base = slash ? slash + 1 : norm;
}

/* ---- reading files ---------------------------------------------------------------- */

// Frees what snap_read filled.
void snap_file_free(snap_file_t *f) {
  free(f->data);
  f->data = NULL;
}

/* Reads all of fd (st_size bytes, at most max) into f. 0 or -errno. */
static int read_all(int fd, const struct stat *st, uint64_t max, snap_file_t *f) {
  if ((uint64_t)st->st_size > max)
    return -EFBIG;
  size_t want = (size_t)st->st_size;
  f->data = malloc(want + 1);
  if (!f->data)
    return -ENOMEM;
  ssize_t n = util_read_full(fd, f->data, want);
  if (n < 0)
    return (int)n;
  f->data[n] = '\0';
  f->len = (size_t)n;
  return 0;
}

// Reads the regular file rel (absent: existed false).
int snap_read(const ws_t *ws, const char *rel, uint64_t max, snap_file_t *out) {
  memset(out, 0, sizeof *out);
  struct stat st = {0};
  int fd, rc = open_existing(ws, rel, &st, &fd);
  if (rc < 0 || fd < 0)
    return rc;
  rc = read_all(fd, &st, max, out);
  close(fd);
  if (rc < 0) {
    snap_file_free(out);
    return rc;
  }
  out->existed = true;
  out->mode = st.st_mode & 07777;
  snap_sha256(out->data, out->len, out->sha256);
  return 0;
}

/* The real workspace-relative path of dirfd/name, or NULL (no /proc, or outside). */
static char *real_rel(const ws_t *ws, int dirfd, const char *name) {
  char link[64], real[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
  ssize_t n = readlink(link, real, sizeof real - 1);
  size_t rl = strlen(ws->root_real);
  if (n < 0)
    return NULL;
  real[n] = '\0';
  if (strncmp(real, ws->root_real, rl) != 0 || (real[rl] != '\0' && real[rl] != '/'))
    return NULL;
  const char *dir = real + rl + (real[rl] == '/');
  size_t len = strlen(dir) + strlen(name) + 2;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%s%s%s", dir, *dir ? "/" : "", name);
  return out;
}

/* The normalised path of a path from the broker or the model, or NULL with err. */
static char *checked_path(const ws_t *ws, const char *path, char *err, size_t errlen) {
  char *rel = NULL;
  if (ws_rel(ws, path, strlen(path), &rel, err, errlen) != 0)
    return NULL;
  char *norm = snap_norm(rel);
  free(rel);
  if (!norm || !*norm) {
    char shown[200];
    ws_shown(path, strlen(path), shown, sizeof shown);
    snprintf(err, errlen, norm ? "path \"%s\" names the workspace itself, not a file" : "out of memory", shown);
    free(norm);
    return NULL;
  }
  return norm;
}

// The file a file tool changes, by its real workspace-relative path.
int snap_target(const ws_t *ws, const char *path, char **canon, char *err, size_t errlen) {
  char *norm = checked_path(ws, path, err, errlen), dir[PATH_MAX], shown[200];
  if (!norm)
    return -1;
  const char *base;
  split(norm, dir, sizeof dir, &base);
  ws_shown(path, strlen(path), shown, sizeof shown);
  int fd = ws_open_dir(ws, dir, false);
  if (fd == -ENOENT) { /* the tool makes the parents: the file is absent */
    *canon = norm;
    return 0;
  }
  if (fd >= 0)
    close(fd);
  ws_target_t t;
  if (fd < 0 || ws_target(ws, norm, false, shown, &t, err, errlen) != 0) {
    if (fd < 0)
      ws_strerror(-fd, shown, err, errlen);
    free(norm);
    return -1;
  }
  char *real = real_rel(ws, t.dirfd, t.name);
  ws_target_close(&t);
  *canon = real ? real : norm;
  if (real)
    free(norm);
  if (!snap_utf8_ok(*canon, strlen(*canon))) {
    snprintf(err, errlen, "path \"%s\" leads to a file whose name is not UTF-8; it cannot be checkpointed", shown);
    free(*canon);
    *canon = NULL;
    return -1;
  }
  return 0;
}

/* ---- the walk ------------------------------------------------------------------------ */

typedef struct walker snap_walker_t;
struct walker {
  /* A regular file: >0 when it was removed, 0, or -errno to stop. */
  int (*file)(snap_walker_t *w, int dirfd, const char *name, const char *rel, const struct stat *st);
  /* A symlink or special file (never followed). */
  void (*skip)(snap_walker_t *w, int dirfd, const char *name, const char *rel, const struct stat *st);
  /* A directory walked, `removed` of its entries removed: >0 when it was removed itself. */
  int (*dir_done)(snap_walker_t *w, int dirfd, const char *name, const char *rel, long removed);
  atomic_bool *cancel;
  char *err;
  size_t errlen;
  void *ud;
};

/* Records why the walk stops; returns rc. */
static long walk_fail(snap_walker_t *w, long rc, const char *rel, const char *what) {
  char shown[200];
  ws_shown(*rel ? rel : ".", strlen(*rel ? rel : "."), shown, sizeof shown);
  if (rc == -ECANCELED)
    snprintf(w->err, w->errlen, "cancelled");
  else if (what)
    snprintf(w->err, w->errlen, "%s \"%s\": %s", what, shown, strerror((int)-rc));
  return rc;
}

static long walk_snapshot_dir(snap_walker_t *w, int fd, char *rel, size_t rlen, int depth);

/* One entry of a directory: >=0 entries removed, or -errno. rel holds its path. */
static long walk_entry(snap_walker_t *w, DIR *d, const char *name, char *rel, size_t len, int depth) {
  struct stat st;
  if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 0 : walk_fail(w, -errno, rel, "cannot look at");
  if (S_ISREG(st.st_mode))
    return w->file(w, dirfd(d), name, rel, &st);
  if (!S_ISDIR(st.st_mode)) {
    if (w->skip)
      w->skip(w, dirfd(d), name, rel, &st);
    return 0;
  }
  if (strcmp(name, ".git") == 0)
    return 0;
  if (depth + 1 > SNAP_MAX_DEPTH) {
    snprintf(w->err, w->errlen, "directories are nested deeper than %d levels (at \"%.160s\")", SNAP_MAX_DEPTH, rel);
    return -ELOOP;
  }
  int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (cfd < 0)
    return errno == ENOENT ? 0 : walk_fail(w, -errno, rel, "cannot open directory");
  long sub = walk_snapshot_dir(w, cfd, rel, len, depth + 1);
  if (sub < 0 || !w->dir_done)
    return sub < 0 ? sub : 0;
  return w->dir_done(w, dirfd(d), name, rel, sub);
}

/* Walks the directory fd (taken over) whose path is rel (rlen bytes, a PATH_MAX
 * buffer). Entries removed from it, or -errno. */
static long walk_snapshot_dir(snap_walker_t *w, int fd, char *rel, size_t rlen, int depth) {
  DIR *d = fdopendir(fd);
  if (!d) {
    long rc = walk_fail(w, -errno, rel, "cannot read directory");
    close(fd);
    return rc;
  }
  long removed = 0, rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno)
        rc = walk_fail(w, -errno, rel, "cannot read directory");
      break;
    }
    const char *name = de->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
      continue;
    if (w->cancel && atomic_load(w->cancel)) {
      rc = walk_fail(w, -ECANCELED, rel, NULL);
      break;
    }
    int len = snprintf(rel + rlen, PATH_MAX - rlen, "%s%s", rlen ? "/" : "", name);
    if (len < 0 || rlen + (size_t)len >= PATH_MAX) {
      rel[rlen] = '\0';
      rc = walk_fail(w, -ENAMETOOLONG, rel, "a name is too long in");
      break;
    }
    rc = walk_entry(w, d, name, rel, rlen + (size_t)len, depth);
    rel[rlen] = '\0';
    if (rc < 0)
      break;
    removed += rc;
    rc = 0;
  }
  closedir(d);
  return rc < 0 ? rc : removed;
}

/* Walks the whole workspace. 0 or -errno. */
static int walk_workspace(const ws_t *ws, snap_walker_t *w) {
  char *rel = calloc(1, PATH_MAX);
  if (!rel) {
    snprintf(w->err, w->errlen, "out of memory");
    return -ENOMEM;
  }
  int fd = openat(ws->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  long rc = fd < 0 ? walk_fail(w, -errno, rel, "cannot open the workspace") : walk_snapshot_dir(w, fd, rel, 0, 0);
  free(rel);
  return rc < 0 ? (int)rc : 0;
}

/* ---- listing for a snapshot ------------------------------------------------------ */

// The default snapshot limits.
snap_limits_t snap_default_limits(void) {
  return (snap_limits_t){SNAP_MAX_FILES, SNAP_MAX_TOTAL, SNAP_MAX_FILE};
}

typedef struct {
  snap_list_t *l;
  const snap_limits_t *lim;
} listing_t;

static int list_file(snap_walker_t *w, int dirfd, const char *name, const char *rel, const struct stat *st) {
  (void)dirfd;
  listing_t *ls = w->ud;
  snap_list_t *l = ls->l;
  if (strncmp(name, WS_TMP_PREFIX, strlen(WS_TMP_PREFIX)) == 0)
    return 0;
  if (!snap_utf8_ok(rel, strlen(rel))) {
    char shown[200];
    ws_shown(rel, strlen(rel), shown, sizeof shown);
    snprintf(w->err, w->errlen, "the name of file \"%s\" is not UTF-8: it cannot be checkpointed (rename it)", shown);
    return -EILSEQ;
  }
  if (++l->seen > SNAP_COUNT_CAP)
    return -EFBIG;
  l->bytes += (uint64_t)st->st_size;
  if (!l->biggest || (uint64_t)st->st_size > l->biggest_size) {
    free(l->biggest);
    l->biggest = strdup(rel);
    l->biggest_size = (uint64_t)st->st_size;
  }
  if (l->seen > ls->lim->max_files)
    return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    snap_entry_t *grown = realloc(l->files, cap * sizeof *grown);
    if (!grown)
      return -ENOMEM;
    l->files = grown;
    l->cap = cap;
  }
  char *copy = strdup(rel);
  if (!copy)
    return -ENOMEM;
  l->files[l->n++] = (snap_entry_t){copy, (uint64_t)st->st_size, st->st_mode & 07777};
  return 0;
}

/* A symlink's target (UTF-8, within the bounds) into l->links. */
static void list_link(snap_list_t *l, int dirfd, const char *name, const char *rel) {
  char target[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name, target, sizeof target - 1);
  if (n < 0 || json_array_size(l->links) >= SNAP_MAX_FILES || !snap_utf8_ok(rel, strlen(rel)))
    return;
  target[n] = '\0';
  if (snap_utf8_ok(target, (size_t)n))
    json_array_append_new(l->links, json_pack("{s:s, s:s}", "path", rel, "target", target));
}

static void list_skip(snap_walker_t *w, int dirfd, const char *name, const char *rel, const struct stat *st) {
  snap_list_t *l = ((listing_t *)w->ud)->l;
  if (S_ISLNK(st->st_mode))
    l->symlinks++, list_link(l, dirfd, name, rel);
  else
    l->others++;
  if (json_array_size(l->skipped) < SNAP_NAMED_SKIPS)
    json_array_append_new(l->skipped, lossy_string(rel));
}

/* A directory walked: its path and mode into l->dirs (they come back on a rollback, empty or not). */
static int list_dir(snap_walker_t *w, int dirfd, const char *name, const char *rel, long removed) {
  (void)removed;
  snap_list_t *l = ((listing_t *)w->ud)->l;
  struct stat st;
  if (json_array_size(l->dirs) < SNAP_MAX_FILES && snap_utf8_ok(rel, strlen(rel)) &&
      fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
    json_array_append_new(l->dirs, json_pack("{s:s, s:i}", "path", rel, "mode", (int)(st.st_mode & 07777)));
  return 0;
}

/* err for a passed bound: -EFBIG, or 0 when every bound holds. */
static int check_bounds(const snap_list_t *l, const snap_limits_t *lim, char *err, size_t errlen) {
  const char *why = ": an execute_bash step cannot be checkpointed for rollback";
  if (l->seen > SNAP_COUNT_CAP)
    snprintf(err, errlen, "the workspace has more than %d files (limit %zu)%s", SNAP_COUNT_CAP, lim->max_files, why);
  else if (l->seen > lim->max_files)
    snprintf(err, errlen, "the workspace has %zu files (limit %zu)%s", l->seen, lim->max_files, why);
  else if (l->bytes > lim->max_total)
    snprintf(err, errlen, "the workspace's files hold %.1f MiB (limit %.1f MiB)%s", MIB(l->bytes), MIB(lim->max_total),
             why);
  else if (l->biggest && l->biggest_size > lim->max_file)
    snprintf(err, errlen, "file \"%.160s\" has %.1f MiB (limit %.1f MiB per file)%s", l->biggest, MIB(l->biggest_size),
             MIB(lim->max_file), why);
  else
    return 0;
  return -EFBIG;
}

// Lists the workspace's regular files for a snapshot, within the bounds.
int snap_list(const ws_t *ws, const snap_limits_t *lim, atomic_bool *cancel, snap_list_t *out, char *err,
              size_t errlen) {
  memset(out, 0, sizeof *out);
  out->skipped = json_array();
  out->links = json_array();
  out->dirs = json_array();
  listing_t ls = {out, lim};
  snap_walker_t w = {.file = list_file,
                     .skip = list_skip,
                     .dir_done = list_dir,
                     .cancel = cancel,
                     .err = err,
                     .errlen = errlen,
                     .ud = &ls};
  err[0] = '\0';
  int rc = walk_workspace(ws, &w);
  if (rc == 0 || rc == -EFBIG)
    rc = check_bounds(out, lim, err, errlen);
  if (rc == -ENOMEM && !err[0])
    snprintf(err, errlen, "out of memory listing the workspace");
  return rc;
}

// Frees a snapshot's list.
void snap_list_free(snap_list_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->files[i].path);
  free(l->files);
  free(l->biggest);
  json_decref(l->skipped);
  json_decref(l->links);
  json_decref(l->dirs);
  memset(l, 0, sizeof *l);
}

/* ---- what a step changed ------------------------------------------------------------ */

/* {state, mode} of a path, for snap_changes' maps. */
static json_t *path_state(const char *state, mode_t mode) {
  return json_pack("{s:s, s:i}", "state", state, "mode", (int)(mode & 07777));
}

// Notes a path's state in pre.
void snap_note(json_t *pre, const char *rel, const char *state, mode_t mode) {
  json_object_set_new(pre, rel, path_state(state, mode));
}

// The state string of a symlink.
char *snap_link_state(const char *target) {
  size_t len = strlen(SNAP_LINK_PREFIX) + strlen(target) + 1;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%s%s", SNAP_LINK_PREFIX, target);
  return out;
}

/* Appends {path, state, sha256, mode} to changed when now differs from was (either may be NULL: absent). */
static void compare(json_t *changed, const char *rel, const json_t *was, const json_t *now) {
  const char *a = jx_str(was, "state", ""), *b = jx_str(now, "state", "");
  bool link = strncmp(b, SNAP_LINK_PREFIX, strlen(SNAP_LINK_PREFIX)) == 0;
  if (strcmp(a, b) == 0 && (link || jx_int(was, "mode", 0) == jx_int(now, "mode", 0)))
    return;
  bool file = *b && !link && strcmp(b, SNAP_DIR_STATE) != 0;
  json_array_append_new(changed, json_pack("{s:s, s:s, s:s, s:I}", "path", rel, "state", b, "sha256", file ? b : "",
                                           "mode", jx_int(now, "mode", 0)));
}

/* The links and directories of a listing into the map now. */
static void note_others(json_t *now, const snap_list_t *l) {
  size_t i;
  json_t *e;
  json_array_foreach(l->links, i, e) {
    char *state = snap_link_state(jx_str(e, "target", ""));
    if (state)
      snap_note(now, jx_str(e, "path", ""), state, 0);
    free(state);
  }
  json_array_foreach(l->dirs, i, e) snap_note(now, jx_str(e, "path", ""), SNAP_DIR_STATE, (mode_t)jx_int(e, "mode", 0));
}

// What changed since pre.
int snap_changes(const ws_t *ws, const json_t *pre, json_t **changed, char *err, size_t errlen) {
  snap_list_t l;
  snap_limits_t lim = snap_default_limits();
  *changed = NULL;
  int rc = snap_list(ws, &lim, NULL, &l, err, errlen);
  if (rc == 0 && l.seen > l.n)
    rc = -EFBIG;
  json_t *now = json_object(), *out = json_array();
  for (size_t i = 0; rc == 0 && i < l.n; i++) {
    char hex[SNAP_HEX_LEN + 1];
    if (snap_sha256_file(ws, l.files[i].path, hex) == 0 && hex[0])
      snap_note(now, l.files[i].path, hex, l.files[i].mode);
  }
  if (rc == 0)
    note_others(now, &l);
  const char *path;
  json_t *v;
  json_object_foreach(now, path, v) compare(out, path, jx_obj(pre, path), v);
  json_object_foreach((json_t *)pre, path, v) if (!jx_obj(now, path)) compare(out, path, v, NULL);
  snap_list_free(&l);
  json_decref(now);
  if (rc < 0) {
    json_decref(out);
    return rc;
  }
  *changed = out;
  return 0;
}

// The state of rel now.
int snap_state(const ws_t *ws, const char *rel, char *out, size_t outlen, mode_t *mode) {
  char err[256], dir[PATH_MAX], target[PATH_MAX];
  char *norm = checked_path(ws, rel, err, sizeof err);
  out[0] = '\0';
  *mode = 0;
  if (!norm)
    return -EINVAL;
  const char *base;
  split(norm, dir, sizeof dir, &base);
  int fd = ws_open_dir(ws, dir, false), rc = 0;
  struct stat st;
  if (fd == -ENOENT || fd == -ENOTDIR)
    rc = 0; /* absent */
  else if (fd < 0)
    rc = fd;
  else if (fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
    rc = errno == ENOENT ? 0 : -errno;
  else if (S_ISDIR(st.st_mode))
    snprintf(out, outlen, "%s", SNAP_DIR_STATE), *mode = st.st_mode & 07777;
  else if (S_ISLNK(st.st_mode)) {
    ssize_t n = readlinkat(fd, base, target, sizeof target - 1);
    if (n < 0)
      rc = -errno;
    else
      target[n] = '\0', snprintf(out, outlen, "%s%s", SNAP_LINK_PREFIX, target);
  } else if (S_ISREG(st.st_mode))
    rc = snap_state_file(ws, norm, out, mode);
  else
    snprintf(out, outlen, "special"), *mode = st.st_mode & 07777;
  if (fd >= 0)
    close(fd);
  free(norm);
  return rc;
}

/* ---- restores ------------------------------------------------------------------------ */

/* Removes what is at dirfd/name when it is not a directory with entries. 0 or -errno. */
static int remove_entry(int dirfd, const char *name) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
    return 0;
  if (errno != EISDIR && errno != EPERM)
    return -errno;
  return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Writes or removes base in the directory dir. 0 or -errno. */
static int restore_in(const ws_t *ws, const char *dir, const char *base, bool existed, const void *data, size_t len,
                      bool mode_given, mode_t mode) {
  int fd = ws_open_dir(ws, dir, existed);
  if (!existed && (fd == -ENOENT || fd == -ENOTDIR))
    return 0;
  if (fd < 0)
    return fd;
  struct stat st;
  if (!mode_given)
    mode = fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644;
  int rc = existed ? ws_write_atomic(fd, base, data, len, mode & 07777, true) : remove_entry(fd, base);
  close(fd);
  return rc;
}

// Rollback of one file: write its pre-image, or remove it.
int snap_restore_file(const ws_t *ws, const char *rel, bool existed, const void *data, size_t len, bool mode_given,
                      mode_t mode, char *hex, bool *refused, char *err, size_t errlen) {
  *refused = false;
  hex[0] = '\0';
  char *norm = checked_path(ws, rel, err, errlen), dir[PATH_MAX];
  if (!norm) {
    *refused = true;
    return -1;
  }
  const char *base;
  split(norm, dir, sizeof dir, &base);
  int rc = restore_in(ws, dir, base, existed, data, len, mode_given, mode);
  if (rc < 0) {
    char shown[200];
    ws_shown(rel, strlen(rel), shown, sizeof shown);
    ws_strerror(-rc, shown, err, errlen);
    *refused = rc == -EXDEV;
  } else if (existed) {
    snap_sha256(data, len, hex);
  }
  free(norm);
  return rc < 0 ? -1 : 0;
}

/* Makes a symlink (data: its target) or a directory at base in dirfd, replacing a file, a
 * symlink or an empty directory there; an existing directory only gets mode. 0 or -errno. */
static int make_other(int dirfd, const char *base, const char *type, const char *target, mode_t mode) {
  struct stat st;
  bool is_dir = fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
  if (strcmp(type, "dir") == 0 && is_dir)
    return fchmodat(dirfd, base, mode & 07777, 0) == 0 ? 0 : -errno;
  int rc = remove_entry(dirfd, base);
  if (rc < 0)
    return rc;
  if (strcmp(type, "dir") == 0)
    return mkdirat(dirfd, base, mode & 07777) == 0 && fchmodat(dirfd, base, mode & 07777, 0) == 0 ? 0 : -errno;
  return symlinkat(target, dirfd, base) == 0 ? 0 : -errno;
}

// Rollback of a symlink or a directory.
int snap_restore_other(const ws_t *ws, const char *rel, const char *type, const char *target, mode_t mode,
                       bool *refused, char *err, size_t errlen) {
  *refused = false;
  char *norm = checked_path(ws, rel, err, errlen), dir[PATH_MAX];
  if (!norm) {
    *refused = true;
    return -1;
  }
  const char *base;
  split(norm, dir, sizeof dir, &base);
  int fd = ws_open_dir(ws, dir, true), rc = fd;
  if (fd >= 0) {
    rc = make_other(fd, base, type, target ? target : "", mode);
    close(fd);
  }
  if (rc < 0) {
    char shown[200];
    ws_shown(rel, strlen(rel), shown, sizeof shown);
    ws_strerror(-rc, shown, err, errlen);
    *refused = rc == -EXDEV;
  }
  free(norm);
  return rc < 0 ? -1 : 0;
}

typedef struct {
  char **keep;
  size_t n;
  json_t *deleted, *dirs;
  size_t count, named_bytes;
  bool truncated;
} pruning_t;

/* Names rel in list while the report stays within its bounds. */
static void name_removed(pruning_t *p, json_t *list, const char *rel) {
  size_t len = strlen(rel) + 8;
  if (json_array_size(p->deleted) + json_array_size(p->dirs) >= SNAP_DELETED_MAX ||
      p->named_bytes + len > SNAP_DELETED_BYTES) {
    p->truncated = true;
    return;
  }
  p->named_bytes += len;
  json_array_append_new(list, lossy_string(rel));
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when a kept path is rel, or lies beneath rel when dir. */
static bool kept(const pruning_t *p, const char *rel, bool dir) {
  size_t lo = 0, hi = p->n, len = strlen(rel);
  while (lo < hi) { /* the first kept path >= rel */
    size_t mid = (lo + hi) / 2;
    if (strcmp(p->keep[mid], rel) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i < p->n && strncmp(p->keep[i], rel, len) == 0; i++) {
    if (p->keep[i][len] == '\0' && !dir)
      return true;
    if (dir && p->keep[i][len] == '/')
      return true;
  }
  return false;
}

static int prune_file(snap_walker_t *w, int dirfd, const char *name, const char *rel, const struct stat *st) {
  (void)st;
  pruning_t *p = w->ud;
  if (kept(p, rel, false))
    return 0;
  if (unlinkat(dirfd, name, 0) != 0)
    return errno == ENOENT ? 0 : (int)walk_fail(w, -errno, rel, "cannot delete");
  p->count++;
  name_removed(p, p->deleted, rel);
  return 1;
}

static int prune_dir(snap_walker_t *w, int dirfd, const char *name, const char *rel, long removed) {
  pruning_t *p = w->ud;
  if (removed == 0 || kept(p, rel, true) || unlinkat(dirfd, name, AT_REMOVEDIR) != 0)
    return 0;
  name_removed(p, p->dirs, rel);
  return 1;
}

/* The normalised strings of keep, sorted, into p. 0 or -ENOMEM. */
static int load_keep(const json_t *keep, pruning_t *p) {
  p->keep = calloc(json_array_size(keep) + 1, sizeof *p->keep);
  if (!p->keep)
    return -ENOMEM;
  size_t i;
  json_t *v;
  json_array_foreach(keep, i, v) {
    char *norm = json_is_string(v) ? snap_norm(json_string_value(v)) : NULL;
    if (norm && *norm)
      p->keep[p->n++] = norm;
    else
      free(norm);
  }
  qsort(p->keep, p->n, sizeof *p->keep, cmp_str);
  return 0;
}

// Rollback of an execute_bash step: removes the files not kept.
int snap_prune(const ws_t *ws, const json_t *keep, json_t **deleted, char *err, size_t errlen) {
  pruning_t p = {.deleted = json_array(), .dirs = json_array()};
  snap_walker_t w = {.file = prune_file, .dir_done = prune_dir, .err = err, .errlen = errlen, .ud = &p};
  err[0] = '\0';
  int rc = load_keep(keep, &p);
  if (rc == 0)
    rc = walk_workspace(ws, &w);
  if (rc == -ENOMEM && !err[0])
    snprintf(err, errlen, "out of memory pruning the workspace");
  for (size_t i = 0; i < p.n; i++)
    free(p.keep[i]);
  free(p.keep);
  *deleted = json_pack("{s:o, s:I, s:b, s:o}", "deleted", p.deleted, "count", (json_int_t)p.count, "truncated",
                       p.truncated, "dirs", p.dirs);
  return rc;
}
