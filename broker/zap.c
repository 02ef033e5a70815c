/* zap.c: who may connect, and as what (ZAP, RFC 27, for CURVE clients).
 *
 * A CURVE server without a ZAP handler admits any client key. The broker
 * answers ZAP requests itself, in its poll loop, admitting only the public
 * keys of its authorized_keys file. A line is "KEY", "KEY node NAME" or
 * "KEY controller NAME" (a bare key may act as either); a line that starts
 * with '#' is a comment ('#' is a Z85 digit, but never the first of a key).
 * The answer's User-Id, which libzmq attaches to every message of that
 * connection, is "ROLE KEY NAME": the broker checks the role at hello.
 *
 * The file is read again when it changes (checked on every handshake and
 * every heartbeat tick) and at once on SIGHUP. Peers whose key left the file,
 * or whose role no longer fits, are dropped and told so; any later message
 * from that connection must say hello again, which is refused. ZeroMQ has no
 * way to close one peer's connection of a ROUTER, so the cut is the broker's.
 *
 * A socket monitor on the ROUTER reports handshakes that fail before ZAP is
 * asked (a client without CURVE, or with a wrong broker key): each refusal
 * is logged with the client's address, at most once per ZAP_LOG_EVERY_MS per
 * address and reason (how many were not logged is said with the next line).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zmq.h>

#include "internal.h"
#include "obs.h"
#include "log.h"
#include "util.h"

#define ZAP_LOG_EVERY_MS 10000
#define ZAP_LOG_SLOTS 32
#define ZAP_FDS 64
#define MONITOR_EP "inproc://cadre-broker-monitor"

typedef struct {
  char addr[64], why[24];
  int64_t at;     /* monotonic ms of the last line */
  int suppressed; /* refusals since, not logged */
} refusal_t;

struct zap_state {
  authkey_t *keys;
  size_t n;
  struct stat seen; /* the file as last read (st_ino 0: missing) */
  bool read_once;
  void *monitor; /* PAIR connected to the ROUTER's monitor, or NULL */
  struct {
    int fd;
    char addr[64];
  } fds[ZAP_FDS];        /* accepted connections' addresses, for the log */
  int failed_fd_pending; /* a handshake failed: the next DISCONNECTED names it */
  char failed_why[24];
  refusal_t log[ZAP_LOG_SLOTS];
};

static void revoke(broker_t *b);

static const char *role_name(authkey_role_t r) {
  return r == AUTHKEY_NODE ? "node" : r == AUTHKEY_CONTROLLER ? "controller" : "any";
}

/* ---- the authorized_keys file ------------------------------------------ */

static bool name_ok(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n < AUTHKEY_NAME_MAX &&
         strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") == n;
}

int zap_parse_line(const char *line, authkey_t *out, char *err, size_t errlen) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", line);
  char *save = NULL, *key = strtok_r(buf, " \t\r\n", &save);
  if (!key)
    return 0; /* blank */
  char *role = strtok_r(NULL, " \t\r\n", &save), *name = strtok_r(NULL, " \t\r\n", &save);
  char *extra = strtok_r(NULL, " \t\r\n", &save);
  uint8_t raw[32];
  memset(out, 0, sizeof *out);
  /* '#' is a Z85 digit, but a key's first digit is at most 82 ('#' is 84): a comment. */
  if (strlen(key) != KEYS_Z85_LEN || !zmq_z85_decode(raw, key)) {
    if (key[0] == '#')
      return 0;
    snprintf(err, errlen, "\"%.60s\" is not a CURVE public key (40 characters of Z85)", key);
    return -1;
  }
  memcpy(out->key, key, KEYS_Z85_LEN + 1);
  if (!role)
    return 1;
  if (strcmp(role, "node") == 0)
    out->role = AUTHKEY_NODE;
  else if (strcmp(role, "controller") == 0)
    out->role = AUTHKEY_CONTROLLER;
  else {
    snprintf(err, errlen, "role \"%.40s\" must be node or controller", role);
    return -1;
  }
  if (!name || !name_ok(name) || extra) {
    snprintf(err, errlen, "after the role comes one name (letters, digits, . _ @ -; at most %d)", AUTHKEY_NAME_MAX - 1);
    return -1;
  }
  snprintf(out->name, sizeof out->name, "%s", name);
  return 1;
}

/* Reads the file when it changed since the last read (or force). True when
 * the set of keys may have changed. A line that does not parse is logged and
 * skipped; a file that cannot be read admits nobody. */
static bool reload(broker_t *b, bool force) {
  struct zap_state *z = b->zs;
  struct stat st;
  if (stat(b->authorized_path, &st) < 0)
    memset(&st, 0, sizeof st);
  if (!force && z->read_once && st.st_ino == z->seen.st_ino && st.st_size == z->seen.st_size &&
      st.st_mtim.tv_sec == z->seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == z->seen.st_mtim.tv_nsec)
    return false;
  z->seen = st;
  z->read_once = true;
  char *text = util_read_file(b->authorized_path, 1 << 20, NULL);
  if (!text)
    log_warn("%s: cannot read authorized keys: %s; no client can connect", b->authorized_path, strerror(errno));
  size_t cap = 0, n = 0;
  authkey_t *keys = NULL;
  int lineno = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    lineno++;
    authkey_t k;
    char err[160];
    int rc = zap_parse_line(line, &k, err, sizeof err);
    if (rc < 0)
      log_warn("%s:%d: %s; line ignored", b->authorized_path, lineno, err);
    if (rc <= 0)
      continue;
    if (n == cap) {
      authkey_t *grown = realloc(keys, (cap = cap ? cap * 2 : 16) * sizeof *keys);
      if (!grown)
        break;
      keys = grown;
    }
    keys[n++] = k;
  }
  free(text);
  free(z->keys);
  z->keys = keys;
  z->n = n;
  log_info("%s: %zu authorized key%s", b->authorized_path, n, n == 1 ? "" : "s");
  return true;
}

const authkey_t *zap_find(broker_t *b, const char *key) {
  for (size_t i = 0; b->zs && key && i < b->zs->n; i++)
    if (strcmp(b->zs->keys[i].key, key) == 0)
      return &b->zs->keys[i];
  return NULL;
}

/* ---- refusals, logged with the address, rate-limited ------------------- */

static void refusal(broker_t *b, const char *addr, const char *why, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refusal(broker_t *b, const char *addr, const char *why, const char *fmt, ...) {
  struct zap_state *z = b->zs;
  obs_refused(b->obs, why);
  int64_t now = util_now_ms();
  refusal_t *slot = NULL, *oldest = &z->log[0];
  for (int i = 0; i < ZAP_LOG_SLOTS && !slot; i++) {
    if (strcmp(z->log[i].addr, addr) == 0 && strcmp(z->log[i].why, why) == 0)
      slot = &z->log[i];
    else if (z->log[i].at < oldest->at)
      oldest = &z->log[i];
  }
  if (slot && now - slot->at < ZAP_LOG_EVERY_MS) {
    slot->suppressed++;
    return;
  }
  int before = slot ? slot->suppressed : 0;
  if (!slot) {
    slot = oldest;
    snprintf(slot->addr, sizeof slot->addr, "%s", addr);
    snprintf(slot->why, sizeof slot->why, "%s", why);
  }
  slot->at = now;
  slot->suppressed = 0;
  char text[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (before > 0)
    log_warn("%s (and %d more such refusals from %s in the last %d s)", text, before, addr, ZAP_LOG_EVERY_MS / 1000);
  else
    log_warn("%s", text);
}

/* ---- the ZAP handler ---------------------------------------------------- */

int zap_start(broker_t *b) {
  b->zs = calloc(1, sizeof *b->zs);
  b->zap = b->zs ? zmq_socket(b->ctx, ZMQ_REP) : NULL;
  if (!b->zap)
    return -1;
  int linger = 0;
  zmq_setsockopt(b->zap, ZMQ_LINGER, &linger, sizeof linger);
  b->zs->failed_fd_pending = 0;
  reload(b, true);
  return zmq_bind(b->zap, "inproc://zeromq.zap.01");
}

void zap_stop(broker_t *b) {
  if (b->zap)
    zmq_close(b->zap);
  b->zap = NULL;
  if (!b->zs)
    return;
  if (b->zs->monitor)
    zmq_close(b->zs->monitor);
  free(b->zs->keys);
  free(b->zs);
  b->zs = NULL;
}

static void send_frame(void *sock, const void *data, size_t len, bool more) {
  zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
}

/* The printable form of a ZAP address frame. */
static void frame_text(zmq_msg_t *m, char *out, size_t len) {
  size_t n = zmq_msg_size(m) < len - 1 ? zmq_msg_size(m) : len - 1;
  memcpy(out, zmq_msg_data(m), n);
  out[n] = '\0';
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
      out[i] = '?';
}

/* Handles one ZAP request: version, request id, domain, address, identity,
 * mechanism, credentials... Replies version, request id, status, text, user, metadata. */
void zap_handle(broker_t *b) {
  zmq_msg_t parts[8];
  int n = 0;
  int more = 1;
  while (more && n < 8) {
    zmq_msg_init(&parts[n]);
    if (zmq_msg_recv(&parts[n], b->zap, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&parts[n]);
      break;
    }
    more = zmq_msg_more(&parts[n]);
    n++;
  }
  while (more) { /* drain anything beyond what we read */
    zmq_msg_t junk;
    zmq_msg_init(&junk);
    if (zmq_msg_recv(&junk, b->zap, 0) < 0)
      more = 0;
    else
      more = zmq_msg_more(&junk);
    zmq_msg_close(&junk);
  }
  if (n < 6) {
    for (int i = 0; i < n; i++)
      zmq_msg_close(&parts[i]);
    return;
  }
  zap_check(b, false);
  const char *status = "400", *text = "not allowed";
  char user[KEYS_Z85_LEN + AUTHKEY_NAME_MAX + 16] = "", addr[64], z85[KEYS_Z85_LEN + 1] = "";
  frame_text(&parts[3], addr, sizeof addr);
  bool curve = zmq_msg_size(&parts[5]) == 5 && memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0;
  if (curve && n >= 7 && zmq_msg_size(&parts[6]) == 32 && zmq_z85_encode(z85, zmq_msg_data(&parts[6]), 32)) {
    const authkey_t *k = zap_find(b, z85);
    if (k) {
      status = "200";
      text = "OK";
      snprintf(user, sizeof user, "%s %s %s", role_name(k->role), k->key, k->name[0] ? k->name : "-");
    } else {
      refusal(b, addr, "unknown_key",
              "refused a client at %s: its CURVE key %s is not in %s (add a line \"%s node NAME\" "
              "or \"%s controller NAME\" to let it in)",
              addr, z85, b->authorized_path, z85, z85);
    }
  } else {
    refusal(b, addr, "no_curve", "refused a client at %s: it does not use CURVE", addr);
  }
  send_frame(b->zap, "1.0", 3, true);
  send_frame(b->zap, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), true);
  send_frame(b->zap, status, 3, true);
  send_frame(b->zap, text, strlen(text), true);
  send_frame(b->zap, user, strlen(user), true);
  send_frame(b->zap, "", 0, false);
  for (int i = 0; i < n; i++)
    zmq_msg_close(&parts[i]);
}

/* ---- the User-Id of a connection ---------------------------------------- */

int zap_user_parse(const char *user, authkey_t *out) {
  memset(out, 0, sizeof *out);
  char role[16], key[KEYS_Z85_LEN + 1], name[AUTHKEY_NAME_MAX];
  if (!user || sscanf(user, "%15s %40s %63s", role, key, name) != 3 || strlen(key) != KEYS_Z85_LEN)
    return -1;
  out->role = strcmp(role, "node") == 0         ? AUTHKEY_NODE
              : strcmp(role, "controller") == 0 ? AUTHKEY_CONTROLLER
                                                : AUTHKEY_ANY;
  memcpy(out->key, key, sizeof out->key);
  if (strcmp(name, "-") != 0)
    snprintf(out->name, sizeof out->name, "%s", name);
  return 0;
}

/* The key's name, else the start of the key: for log lines. */
static const char *key_label(const authkey_t *k, char *buf, size_t len) {
  if (k->name[0])
    snprintf(buf, len, "%s (%.8s...)", k->name, k->key);
  else
    snprintf(buf, len, "%.8s...", k->key);
  return buf;
}

bool zap_admit_hello(broker_t *b, const char *user, peer_role_t as, const char *addr, char *err, size_t errlen) {
  if (!user)
    return true; /* no ZAP on this connection (a test's inproc socket) */
  authkey_t k;
  char label[96];
  if (zap_user_parse(user, &k) < 0) {
    snprintf(err, errlen, "the connection's identity is not understood");
    return false;
  }
  const authkey_t *now = zap_find(b, k.key);
  key_label(&k, label, sizeof label);
  if (!now) {
    snprintf(err, errlen, "the key %s is no longer in the broker's authorized_keys", label);
    refusal(b, addr ? addr : "?", "removed_key", "refused a hello from %s: key %s was removed from %s",
            addr ? addr : "?", label, b->authorized_path);
    return false;
  }
  peer_role_t want = as;
  if ((now->role == AUTHKEY_NODE && want != PEER_NODE) ||
      (now->role == AUTHKEY_CONTROLLER && want != PEER_CONTROLLER)) {
    snprintf(err, errlen,
             "the key %s is a %s key: it may not connect as a %s (its line in the broker's "
             "authorized_keys says \"%s\")",
             label, role_name(now->role), want == PEER_NODE ? "node" : "controller", role_name(now->role));
    refusal(b, addr ? addr : "?", "wrong_role", "refused a hello as %s from %s: key %s is a %s key",
            want == PEER_NODE ? "node" : "controller", addr ? addr : "?", label, role_name(now->role));
    return false;
  }
  return true;
}

/* Drops every peer whose key is gone from the file or whose role no longer
 * fits what it connected as; each is told why. */
static void revoke(broker_t *b) {
  peer_t *next;
  for (peer_t *p = b->peers; p; p = next) {
    next = p->next;
    if (p->dead || !p->key[0])
      continue;
    const authkey_t *k = zap_find(b, p->key);
    bool ok = k && !(k->role == AUTHKEY_NODE && p->role != PEER_NODE) &&
              !(k->role == AUTHKEY_CONTROLLER && p->role != PEER_CONTROLLER);
    if (ok)
      continue;
    proto_msg_t *bye = proto_msg_new(PROTO_BYE);
    if (bye) {
      proto_set_str(bye, PROTO_F_detail,
                    k ? "the broker's authorized_keys gives this key another role now"
                      : "this key was removed from the broker's authorized_keys");
      broker_send(b, p, bye);
      proto_msg_destroy(&bye);
    }
    log_warn("%s: key %.8s... %s; disconnected", peer_label(p), p->key,
             k ? "has another role now" : "was removed from authorized_keys");
    peer_remove(b, p, k ? "its key's role changed" : "its key was removed");
  }
}

void zap_check(broker_t *b, bool force) {
  if (b->zs && reload(b, force))
    revoke(b);
}

/* ---- the ROUTER's monitor ------------------------------------------------ */

int zap_monitor_start(broker_t *b) {
  int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(b->router, MONITOR_EP, events) < 0)
    return -1;
  b->zs->monitor = zmq_socket(b->ctx, ZMQ_PAIR);
  if (!b->zs->monitor || zmq_connect(b->zs->monitor, MONITOR_EP) < 0)
    return -1;
  return 0;
}

void *zap_monitor_socket(broker_t *b) {
  return b->zs ? b->zs->monitor : NULL;
}

static void fd_addr(int fd, char *out, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  /* Read when the event is handled: a connection closed by then has no address any more. */
  snprintf(out, len, "an unknown address (the connection closed at once)");
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
    return;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, len, "%s", host);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
    snprintf(out, len, "%s", host);
  } else if (ss.ss_family == AF_UNIX) {
    snprintf(out, len, "a local socket");
  }
}

/* What a failed handshake means, and its label (for the rate limit and the metric). */
static const char *protocol_why(int value, const char **label) {
  switch (value) {
  case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: *label = "no_curve"; return "it does not use CURVE";
  case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
    *label = "wrong_broker_key";
    return "its CURVE handshake did not decrypt (it has a wrong broker public key?)";
  default: *label = "bad_handshake"; return "its handshake broke the protocol";
  }
}

/* One monitor event: two frames, (u16 event, u32 value) and the endpoint. */
void zap_monitor_handle(broker_t *b) {
  struct zap_state *z = b->zs;
  for (int i = 0; i < 64; i++) {
    zmq_msg_t head, ep;
    zmq_msg_init(&head);
    zmq_msg_init(&ep);
    if (zmq_msg_recv(&head, z->monitor, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&head);
      zmq_msg_close(&ep);
      return;
    }
    if (zmq_msg_more(&head))
      zmq_msg_recv(&ep, z->monitor, 0);
    uint16_t event = 0;
    uint32_t value = 0;
    if (zmq_msg_size(&head) >= 6) {
      memcpy(&event, zmq_msg_data(&head), 2);
      memcpy(&value, (char *)zmq_msg_data(&head) + 2, 4);
    }
    zmq_msg_close(&head);
    zmq_msg_close(&ep);
    if (event == ZMQ_EVENT_ACCEPTED) {
      int slot = (int)(value % ZAP_FDS);
      z->fds[slot].fd = (int)value;
      fd_addr((int)value, z->fds[slot].addr, sizeof z->fds[slot].addr);
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      z->failed_fd_pending = 1;
      snprintf(z->failed_why, sizeof z->failed_why, "%d",
               event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? (int)value : -1);
    } else if (event == ZMQ_EVENT_DISCONNECTED && z->failed_fd_pending) {
      int slot = (int)(value % ZAP_FDS);
      const char *addr =
          z->fds[slot].fd == (int)value && z->fds[slot].addr[0] ? z->fds[slot].addr : "an unknown address";
      int code = atoi(z->failed_why);
      const char *label = "bad_handshake", *why = code < 0 ? "its handshake failed" : protocol_why(code, &label);
      refusal(b, addr, label, "refused a client at %s: %s", addr, why);
      z->failed_fd_pending = 0;
    }
  }
}
