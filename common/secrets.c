/* secrets: API keys for agentd's model calls (see secrets.h). */
#include "secrets.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRETS_MAX_FILE (1024 * 1024)
#define SUFFIX "_api_key"

typedef struct {
  char *provider; /* normalised, e.g. "lm_studio" */
  char *key;
} secret_t;

struct secrets {
  secret_t *items;
  size_t n;
  char *warning;
};

/* Lowercase, '-' '.' ' ' to '_', "lmstudio" to "lm_studio". Writes at most
 * dstlen bytes; false when it does not fit or is empty. */
static bool normalise_provider(const char *in, size_t len, char *dst, size_t dstlen) {
  if (len == 0 || len >= dstlen)
    return false;
  for (size_t i = 0; i < len; i++) {
    char ch = (char)tolower((unsigned char)in[i]);
    dst[i] = (ch == '-' || ch == '.' || ch == ' ') ? '_' : ch;
  }
  dst[len] = '\0';
  if (strcmp(dst, "lmstudio") == 0)
    snprintf(dst, dstlen, "lm_studio");
  return true;
}

static void wipe_free(char *s) {
  if (!s)
    return;
  explicit_bzero(s, strlen(s));
  free(s);
}

/* Reads the whole file into a NUL-terminated buffer (caller wipes and frees). */
static char *read_file(const char *path, size_t *len, struct stat *st, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open secrets file %s: %s", path, strerror(e));
    errno = e;
    return NULL;
  }
  char *buf = NULL;
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > SECRETS_MAX_FILE) {
    snprintf(err, errlen, "secrets file %s is not a regular file of at most 1 MiB", path);
    close(fd);
    errno = EINVAL;
    return NULL;
  }
  size_t cap = (size_t)st->st_size + 1, n = 0;
  buf = malloc(cap);
  while (buf && n < cap - 1) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  if (!buf) {
    snprintf(err, errlen, "secrets file %s: out of memory", path);
    errno = ENOMEM;
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* Adds "<provider>_api_key": value. Returns 0, or -1 with err set. */
static int add_member(secrets_t *s, const char *path, const char *name, json_t *value, char *err, size_t errlen) {
  size_t nlen = strlen(name), slen = strlen(SUFFIX);
  if (nlen <= slen || strcmp(name + nlen - slen, SUFFIX) != 0)
    return 0; /* not a key */
  if (json_is_null(value))
    return 0;
  if (!json_is_string(value)) {
    snprintf(err, errlen, "secrets file %s: %s must be a string or null", path, name);
    return -1;
  }
  if (json_string_length(value) == 0)
    return 0;
  char provider[64];
  if (!normalise_provider(name, nlen - slen, provider, sizeof provider))
    return 0;
  secret_t *items = realloc(s->items, (s->n + 1) * sizeof *items);
  if (!items)
    goto oom;
  s->items = items;
  char *p = strdup(provider), *k = strdup(json_string_value(value));
  if (!p || !k) {
    free(p);
    wipe_free(k);
    goto oom;
  }
  s->items[s->n].provider = p;
  s->items[s->n].key = k;
  s->n++;
  return 0;
oom:
  snprintf(err, errlen, "secrets file %s: out of memory", path);
  return -1;
}

/* Wipes the string values jansson holds before the tree is freed. */
static void wipe_json_strings(json_t *root) {
  const char *name;
  json_t *v;
  json_object_foreach(root, name, v) {
    if (json_is_string(v))
      explicit_bzero((char *)json_string_value(v), json_string_length(v));
  }
}

static int parse(secrets_t *s, const char *path, const char *buf, size_t len, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, errlen, "secrets file %s: line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    return -1;
  }
  int rc = 0;
  if (!json_is_object(root)) {
    snprintf(err, errlen, "secrets file %s: want a JSON object like {\"openai_api_key\": \"...\"}", path);
    rc = -1;
  }
  const char *name;
  json_t *v;
  json_object_foreach(root, name, v) {
    if (rc == 0)
      rc = add_member(s, path, name, v, err, errlen);
  }
  wipe_json_strings(root);
  json_decref(root);
  return rc;
}

static void check_mode(secrets_t *s, const char *path, const struct stat *st) {
  if ((st->st_mode & (S_IRWXG | S_IRWXO)) == 0)
    return;
  char msg[512];
  snprintf(msg, sizeof msg, "secrets file %s is accessible by group or others (mode %04o); run chmod 600 %s", path,
           (unsigned)(st->st_mode & 07777), path);
  s->warning = strdup(msg);
}

secrets_t *secrets_load(const char *path, char *err, size_t errlen) {
  secrets_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (!path)
    return s;
  struct stat st;
  size_t len = 0;
  char *buf = read_file(path, &len, &st, err, errlen);
  if (!buf) {
    int e = errno;
    secrets_destroy(&s);
    errno = e;
    return NULL;
  }
  int rc = parse(s, path, buf, len, err, errlen);
  explicit_bzero(buf, len);
  free(buf);
  if (rc != 0) {
    secrets_destroy(&s);
    errno = EINVAL;
    return NULL;
  }
  check_mode(s, path, &st);
  return s;
}

const char *secrets_warning(const secrets_t *self) {
  return self ? self->warning : NULL;
}

size_t secrets_count(const secrets_t *self) {
  return self ? self->n : 0;
}

const char *secrets_value(const secrets_t *self, size_t i) {
  return self && i < self->n ? self->items[i].key : NULL;
}

/* The environment's <PROVIDER>_API_KEY, or NULL when unset or empty. */
static const char *env_key(const char *provider) {
  char name[96];
  size_t n = strlen(provider);
  if (n + strlen(SUFFIX) >= sizeof name)
    return NULL;
  for (size_t i = 0; i < n; i++)
    name[i] = (char)toupper((unsigned char)provider[i]);
  snprintf(name + n, sizeof name - n, "_API_KEY");
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

const char *secrets_key_for(const secrets_t *self, const char *provider, const char *profile_api_key) {
  if (profile_api_key && *profile_api_key)
    return profile_api_key;
  char p[64];
  if (!provider || !normalise_provider(provider, strlen(provider), p, sizeof p))
    return NULL;
  for (size_t i = 0; self && i < self->n; i++)
    if (strcmp(self->items[i].provider, p) == 0)
      return self->items[i].key;
  return env_key(p);
}

void secrets_destroy(secrets_t **self_p) {
  if (!self_p || !*self_p)
    return;
  secrets_t *s = *self_p;
  for (size_t i = 0; i < s->n; i++) {
    free(s->items[i].provider);
    wipe_free(s->items[i].key);
  }
  free(s->items);
  free(s->warning);
  free(s);
  *self_p = NULL;
}
