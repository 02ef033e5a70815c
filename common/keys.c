#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "util.h"

#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
#define KEYS_ZAP_ENFORCE_DOMAIN ZMQ_ZAP_ENFORCE_DOMAIN
#else
#define KEYS_ZAP_ENFORCE_DOMAIN 93
#endif

int keys_generate(keys_pair_t *kp) {
  return zmq_curve_keypair(kp->public_key, kp->secret_key) == 0 ? 0 : -1;
}

bool keys_valid_z85(const char *s) {
  uint8_t raw[32];
  return s && strlen(s) == KEYS_Z85_LEN && zmq_z85_decode(raw, s) != NULL;
}

int keys_save_pair(const char *path, const keys_pair_t *kp) {
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "# Cadre CURVE key pair. Keep this file secret (mode 0600).\n"
                   "public-key = \"%s\"\nsecret-key = \"%s\"\n",
                   kp->public_key, kp->secret_key);
  int rc = util_write_file(path, buf, (size_t)n, 0600);
  explicit_bzero(buf, sizeof buf);
  return rc;
}

int keys_save_public(const char *path, const char *public_key) {
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%s\n", public_key);
  return util_write_file(path, buf, (size_t)n, 0644);
}

/* Finds `name = "value"` in text; copies the value (40 chars) into out. */
static bool find_key(const char *text, const char *name, char out[KEYS_Z85_LEN + 1]) {
  const char *p = text;
  size_t nl = strlen(name);
  while ((p = strstr(p, name)) != NULL) {
    bool at_line_start = p == text || p[-1] == '\n' || p[-1] == ' ' || p[-1] == '\t';
    const char *q = p + nl;
    p = q;
    if (!at_line_start)
      continue;
    while (*q == ' ' || *q == '\t' || *q == '=')
      q++;
    if (*q == '"')
      q++;
    if (strspn(q, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#") <
        KEYS_Z85_LEN)
      continue;
    memcpy(out, q, KEYS_Z85_LEN);
    out[KEYS_Z85_LEN] = '\0';
    return keys_valid_z85(out);
  }
  return false;
}

int keys_load_pair(const char *path, keys_pair_t *kp, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) < 0) {
    snprintf(err, errlen, "%s: cannot read key file: %s", path, strerror(errno));
    return -1;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen, "%s: key file is readable by others (mode %03o); run: chmod 600 %s", path,
             (unsigned)(st.st_mode & 0777), path);
    return -1;
  }
  char *text = util_read_file(path, 4096, NULL);
  if (!text) {
    snprintf(err, errlen, "%s: cannot read key file: %s", path, strerror(errno));
    return -1;
  }
  bool ok = find_key(text, "public-key", kp->public_key) && find_key(text, "secret-key", kp->secret_key);
  explicit_bzero(text, strlen(text));
  free(text);
  if (!ok) {
    snprintf(err, errlen, "%s: not a Cadre key pair file (expected public-key and secret-key lines)", path);
    keys_wipe(kp);
    return -1;
  }
  return 0;
}

int keys_load_public(const char *key_or_path, char out[KEYS_Z85_LEN + 1], char *err, size_t errlen) {
  if (keys_valid_z85(key_or_path)) {
    memcpy(out, key_or_path, KEYS_Z85_LEN + 1);
    return 0;
  }
  char *text = util_read_file(key_or_path, 4096, NULL);
  if (!text) {
    snprintf(err, errlen, "%s: not a public key, and cannot read it as a file: %s", key_or_path, strerror(errno));
    return -1;
  }
  bool ok = find_key(text, "public-key", out);
  if (!ok) {
    /* A bare key: first non-comment line. */
    char *line = text;
    while (line && *line) {
      char *nl = strchr(line, '\n');
      if (nl)
        *nl = '\0';
      while (*line == ' ' || *line == '\t')
        line++;
      if (*line && *line != '#') {
        size_t n = strcspn(line, " \t\r");
        line[n] = '\0';
        ok = keys_valid_z85(line);
        if (ok)
          memcpy(out, line, KEYS_Z85_LEN + 1);
        break;
      }
      line = nl ? nl + 1 : NULL;
    }
  }
  explicit_bzero(text, strlen(text));
  free(text);
  if (!ok)
    snprintf(err, errlen, "%s: no CURVE public key found in the file", key_or_path);
  return ok ? 0 : -1;
}

int keys_setup_server(void *sock, const keys_pair_t *kp) {
  int one = 1;
  if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_key, KEYS_Z85_LEN) < 0 ||
      zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "cadre", 5) < 0)
    return -errno;
  /* Fail closed: without a ZAP handler, handshakes are refused instead of
   * admitted. The option is a draft in libzmq 4.3 (93); Debian's build accepts it. */
  if (zmq_setsockopt(sock, KEYS_ZAP_ENFORCE_DOMAIN, &one, sizeof one) < 0 && errno != EINVAL)
    return -errno;
  return 0;
}

int keys_setup_client(void *sock, const keys_pair_t *kp, const char *server_public) {
  if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_public, KEYS_Z85_LEN) < 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp->public_key, KEYS_Z85_LEN) < 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_key, KEYS_Z85_LEN) < 0)
    return -errno;
  return 0;
}

void keys_wipe(keys_pair_t *kp) {
  explicit_bzero(kp, sizeof *kp);
}

void *keys_client_dealer(void *ctx, const char *key_file, const char *server_key, char *err, size_t errlen) {
  char pub[KEYS_Z85_LEN + 1];
  keys_pair_t kp;
  void *s = NULL;
  if (keys_load_pair(key_file, &kp, err, errlen) < 0)
    return NULL;
  if (keys_load_public(server_key, pub, err, errlen) == 0) {
    s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s || keys_setup_client(s, &kp, pub) < 0) {
      snprintf(err, errlen, "cannot make a CURVE client socket: %s", zmq_strerror(errno));
      if (s)
        zmq_close(s);
      s = NULL;
    }
  }
  keys_wipe(&kp);
  return s;
}
