/* llm_record: model exchanges written to files, and answered from them (see llm_record.h). */
#include "llm_record.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define REPLAY_SEEN_MAX 4096 /* distinct requests a replaying daemon keeps counts for */

static char record_dir[4096], replay_dir[4096];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char key[65];
  int next; /* the next recording of this request to play, from 1 */
} seen[REPLAY_SEEN_MAX];
static size_t n_seen;

int llm_record_setup(const char *record, const char *replay, char *err, size_t errlen) {
  const char *dirs[] = {record, replay};
  char *outs[] = {record_dir, replay_dir};
  for (int i = 0; i < 2; i++) {
    outs[i][0] = '\0';
    if (!dirs[i])
      continue;
    if (i == 0) {
      int rc = util_mkdir_p(dirs[i], 0700);
      if (rc < 0) {
        snprintf(err, errlen, "--record %s: %s", dirs[i], strerror(-rc));
        return -1;
      }
    }
    struct stat st;
    if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "--%s %s: not a directory", i ? "replay" : "record", dirs[i]);
      return -1;
    }
    if (strlen(dirs[i]) >= sizeof record_dir) {
      snprintf(err, errlen, "--%s: path too long", i ? "replay" : "record");
      return -1;
    }
    strcpy(outs[i], dirs[i]);
  }
  if (record_dir[0] && replay_dir[0] && strcmp(record_dir, replay_dir) == 0) {
    snprintf(err, errlen, "--record and --replay name the same directory");
    return -1;
  }
  return sodium_init() < 0 ? (snprintf(err, errlen, "cannot initialise libsodium"), -1) : 0;
}

bool llm_recording(void) {
  return record_dir[0] != '\0';
}

bool llm_replaying(void) {
  return replay_dir[0] != '\0';
}

void llm_record_key(const char *request, char key[65]) {
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)request, strlen(request));
  sodium_bin2hex(key, 65, h, sizeof h);
}

static void file_name(char *out, size_t len, const char *dir, const char *key, int n) {
  snprintf(out, len, "%s/%s-%d.json", dir, key, n);
}

int llm_record_save(const char *request, const char *url, const llm_try_t *t) {
  if (!record_dir[0] || !t->tee)
    return 0;
  char key[65];
  llm_record_key(request, key);
  size_t b64len = sodium_base64_encoded_len(t->tee->len, sodium_base64_VARIANT_ORIGINAL);
  char *b64 = malloc(b64len);
  json_t *req = json_loads(request, 0, NULL);
  if (!b64 || !req) {
    free(b64);
    json_decref(req);
    return -ENOMEM;
  }
  sodium_bin2base64(b64, b64len, (const unsigned char *)(t->tee->s ? t->tee->s : ""), t->tee->len,
                    sodium_base64_VARIANT_ORIGINAL);
  /* The request as sent (keys travel in headers, never in it); the URL as shown (no query string). */
  json_t *doc = json_pack("{s:s, s:s, s:o, s:i, s:s, s:b, s:s}", "key", key, "url", url, "request", req, "status",
                          (int)t->status, "content_type", t->ctype, "native", t->native, "response", b64);
  free(b64);
  char *text = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
  json_decref(doc);
  if (!text)
    return -ENOMEM;
  int rc = -EEXIST;
  pthread_mutex_lock(&lock);
  for (int n = 1; n < 100000 && rc == -EEXIST; n++) {
    char path[4300];
    file_name(path, sizeof path, record_dir, key, n);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      rc = errno == EEXIST ? -EEXIST : -errno;
      continue;
    }
    size_t len = strlen(text);
    rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    close(fd);
  }
  pthread_mutex_unlock(&lock);
  free(text);
  return rc;
}

/* The next recording of key to play: 1, 2, ... and the last again once they run out. */
static int next_of(const char *key) {
  for (size_t i = 0; i < n_seen; i++)
    if (strcmp(seen[i].key, key) == 0)
      return seen[i].next++;
  if (n_seen < REPLAY_SEEN_MAX) {
    memcpy(seen[n_seen].key, key, 65);
    seen[n_seen++].next = 2;
  }
  return 1;
}

int llm_replay_play(const char *request, llm_try_t *t, char *err, size_t errlen) {
  char key[65], path[4300];
  llm_record_key(request, key);
  pthread_mutex_lock(&lock);
  int n = next_of(key);
  pthread_mutex_unlock(&lock);
  char *text = NULL;
  for (; n >= 1 && !text; n--) { /* past the last recording: the last one again */
    file_name(path, sizeof path, replay_dir, key, n);
    text = util_read_file(path, 256 << 20, NULL);
  }
  if (!text) {
    snprintf(err, errlen,
             "no recording of this request in %s (sha256 %.16s...): the prompt, history, tools or profile differ "
             "from the recorded run; record it again with cadre-agentd --record",
             replay_dir, key);
    return -ENOENT;
  }
  json_t *doc = json_loads(text, 0, NULL);
  free(text);
  const char *b64 = json_string_value(json_object_get(doc, "response"));
  size_t cap = b64 ? strlen(b64) : 0, len = 0;
  unsigned char *body = malloc(cap + 1);
  if (!doc || !b64 || !body ||
      sodium_base642bin(body, cap + 1, b64, cap, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
    snprintf(err, errlen, "%s: not a recording (bad JSON or response)", path);
    free(body);
    json_decref(doc);
    return -EINVAL;
  }
  t->native = json_is_true(json_object_get(doc, "native"));
  llm_http_play(t, (long)json_integer_value(json_object_get(doc, "status")),
                json_string_value(json_object_get(doc, "content_type")), (const char *)body, len);
  free(body);
  json_decref(doc);
  return 0;
}
