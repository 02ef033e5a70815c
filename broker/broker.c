/* broker.c: the socket, the poll loop, and dispatch of each message type. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <zmq.h>

#include "internal.h"
#include "obs.h"
#include "log.h"
#include "util.h"

/* Loads the broker key pair from the state dir, creating it (and a client key
 * pair for local controllers and nodes, authorised by default) on first start. */
static int load_or_create_keys(broker_t *b, char *err, size_t errlen) {
  char *pair = util_path_join(b->opts.state_dir, "broker.key");
  char *pub = util_path_join(b->opts.state_dir, "broker.pub");
  char *client = util_path_join(b->opts.state_dir, "client.key");
  int rc = -1;
  struct stat st;
  if (stat(pair, &st) < 0) {
    keys_pair_t ck;
    if (keys_generate(&b->keys) < 0 || keys_generate(&ck) < 0) {
      snprintf(err, errlen, "libzmq has no CURVE support");
      goto out;
    }
    char line[128];
    snprintf(line, sizeof line, "# Cadre authorised client keys, one per line\n%s\n", ck.public_key);
    int w = keys_save_pair(pair, &b->keys);
    if (w == 0)
      w = keys_save_pair(client, &ck);
    if (w == 0 && stat(b->authorized_path, &st) < 0)
      w = util_write_file(b->authorized_path, line, strlen(line), 0600);
    keys_wipe(&ck);
    if (w < 0) {
      snprintf(err, errlen, "%s: cannot write keys: %s", b->opts.state_dir, strerror(-w));
      goto out;
    }
    log_info("created CURVE keys in %s (client key: %s)", b->opts.state_dir, client);
  } else if (keys_load_pair(pair, &b->keys, err, errlen) < 0) {
    goto out;
  }
  if (keys_save_public(pub, b->keys.public_key) < 0) {
    snprintf(err, errlen, "%s: cannot write", pub);
    goto out;
  }
  rc = 0;
out:
  free(pair);
  free(pub);
  free(client);
  return rc;
}

/* Writes the endpoints actually bound (wildcard ports resolved) to <state>/endpoint. */
static int write_endpoints(broker_t *b) {
  char buf[BROKER_MAX_BINDS * 260] = "";
  size_t n = 0;
  for (int i = 0; i < b->n_endpoints; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\n", b->endpoints[i]);
  char *path = util_path_join(b->opts.state_dir, "endpoint");
  int rc = util_write_file(path, buf, n, 0644);
  free(path);
  return rc;
}

/* Without CURVE anyone who reaches the socket is in: loopback and local sockets only. */
static bool local_endpoint(const char *ep) {
  return strncmp(ep, "tcp://127.", 10) == 0 || strncmp(ep, "tcp://[::1]", 11) == 0 || strncmp(ep, "ipc://", 6) == 0 ||
         strncmp(ep, "inproc://", 9) == 0;
}

static int bind_all(broker_t *b, char *err, size_t errlen) {
  for (int i = 0; i < b->opts.n_binds; i++) {
    if (b->opts.no_curve && !local_endpoint(b->opts.binds[i])) {
      snprintf(err, errlen, "--no-curve: %s is not a loopback endpoint (tcp://127.x.x.x, ipc://)", b->opts.binds[i]);
      return -1;
    }
    if (zmq_bind(b->router, b->opts.binds[i]) < 0) {
      snprintf(err, errlen, "cannot bind %s: %s", b->opts.binds[i], zmq_strerror(errno));
      return -1;
    }
    size_t len = sizeof b->endpoints[0];
    zmq_getsockopt(b->router, ZMQ_LAST_ENDPOINT, b->endpoints[b->n_endpoints], &len);
    log_info("listening on %s", b->endpoints[b->n_endpoints]);
    b->n_endpoints++;
  }
  if (write_endpoints(b) < 0) {
    snprintf(err, errlen, "%s: cannot write the endpoint file", b->opts.state_dir);
    return -1;
  }
  return 0;
}

static int setup_router(broker_t *b) {
  b->router = zmq_socket(b->ctx, ZMQ_ROUTER);
  if (!b->router)
    return -1;
  int one = 1, hwm = 100000;
  /* No silent drops: a send to an unknown or unreachable peer fails with EHOSTUNREACH. */
  if (zmq_setsockopt(b->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one) < 0 ||
      zmq_setsockopt(b->router, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
      zmq_setsockopt(b->router, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 || proto_socket_setup(b->router) < 0)
    return -1;
  return b->opts.no_curve ? 0 : keys_setup_server(b->router, &b->keys);
}

/* nodes: a node left; sessions and workflows give its work to others. */
static void node_lost(broker_t *b, peer_t *node) {
  sessions_node_lost(b, node);
  workflow_node_lost(b, node);
}

static void unreachable(broker_t *b, peer_t *p) {
  peer_remove(b, p, "unreachable");
}

/* Wires the modules' upward notices (see broker_hooks_t). */
static void set_hooks(broker_t *b) {
  b->hooks = (broker_hooks_t){
      .unreachable = unreachable,
      .node_lost = node_lost,
      .turn_started = agents_turn_started,
      .turn_done = agents_turn_done,
      .turn_failed = agents_turn_failed,
      .tools_for = agents_tools_for,
      .answer = workflow_on_answer,
      .summary = workflow_agent_summary,
      .tap = http_tap,
  };
}

int broker_core_start(broker_t *b) {
  set_hooks(b);
  if (!b->write)
    outbox_set_writer(b, NULL, NULL);
  if (!b->turn_budget)
    b->turn_budget = SESSIONS_TURN_BUDGET;
  b->event_seq = store_event_last(b->store); /* seqs go on across restarts: controllers resume by them */
  return sessions_start(b) < 0 || workflow_start(b) < 0 ? -1 : 0;
}

broker_t *broker_new(const broker_opts_t *opts, char *err, size_t errlen) {
  broker_t *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  b->opts = *opts;
  b->started_ms = util_wall_ms();
  util_random_hex(b->epoch, 8);
  int rc = util_mkdir_p(opts->state_dir, 0700);
  if (rc < 0) {
    snprintf(err, errlen, "%s: cannot create state directory: %s", opts->state_dir, strerror(-rc));
    goto fail;
  }
  b->authorized_path =
      opts->authorized_keys ? strdup(opts->authorized_keys) : util_path_join(opts->state_dir, "authorized_keys");
  if (load_or_create_keys(b, err, errlen) < 0)
    goto fail;
  b->store = store_open(opts->state_dir, err, errlen);
  if (!b->store)
    goto fail;
  b->obs = obs_new();
  b->ctx = zmq_ctx_new();
  /* The ZAP handler must be bound before the first CURVE handshake can happen. */
  if (!b->ctx || zap_start(b) < 0) {
    snprintf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(errno));
    goto fail;
  }
  if (setup_router(b) < 0) {
    snprintf(err, errlen, "cannot set up the ROUTER socket: %s", zmq_strerror(errno));
    goto fail;
  }
  if (opts->metrics && http_start(b, opts->metrics, err, errlen) < 0)
    goto fail;
  if (zap_monitor_start(b) < 0)
    log_warn("no socket monitor (%s): refused handshakes will not be logged", zmq_strerror(errno));
  if (bind_all(b, err, errlen) < 0 || broker_core_start(b) < 0)
    goto fail;
  return b;
fail:
  broker_destroy(&b);
  return NULL;
}

void broker_destroy(broker_t **self_p) {
  if (!self_p || !*self_p)
    return;
  broker_t *b = *self_p;
  turns_free_all(b);
  peers_free_all(b);
  broker_events_drop(b);
  workflow_stop(b);
  if (b->router)
    zmq_socket_monitor(b->router, NULL, 0);
  zap_stop(b);
  http_stop(b);
  obs_destroy(&b->obs);
  if (b->router)
    zmq_close(b->router);
  if (b->ctx)
    zmq_ctx_term(b->ctx);
  store_close(&b->store);
  keys_wipe(&b->keys);
  json_decref(b->allowed);
  json_decref(b->streaming);
  json_decref(b->requests);
  free(b->authorized_path);
  free(b);
  *self_p = NULL;
}

static void send_welcome(broker_t *b, peer_t *p) {
  proto_msg_t *w = proto_msg_new(PROTO_WELCOME);
  if (!w)
    return;
  proto_set_str(w, PROTO_F_epoch, b->epoch);
  PROTO_SET(w, heartbeat_ms, b->opts.heartbeat_ms);
  proto_set_str(w, PROTO_F_version, CADRE_VERSION);
  proto_set_str(w, PROTO_F_name, p->name);
  broker_send(b, p, w);
  proto_msg_destroy(&w);
}

/* A property of the frame being handled ("User-Id", "Peer-Address"), or NULL. */
static const char *frame_property(broker_t *b, const char *name) {
  return b->frame ? zmq_msg_gets(b->frame, name) : NULL;
}

static void on_hello(broker_t *b, const uint8_t *id, size_t idlen, const proto_msg_t *m) {
  char err[400];
  peer_role_t as = m->role && strcmp(m->role, "node") == 0 ? PEER_NODE : PEER_CONTROLLER;
  const char *user = frame_property(b, "User-Id");
  if (!zap_admit_hello(b, user, as, frame_property(b, "Peer-Address"), err, sizeof err)) {
    broker_send_error(b, id, idlen, PROTO_ERR_key_refused, err, m->id);
    return;
  }
  peer_t *p = peer_hello(b, id, idlen, m, err, sizeof err);
  if (!p) {
    broker_send_error(b, id, idlen, PROTO_ERR_bad_hello, err, m->id);
    return;
  }
  authkey_t k;
  if (zap_user_parse(user, &k) == 0)
    memcpy(p->key, k.key, sizeof p->key);
  send_welcome(b, p);
  if (p->role == PEER_NODE) {
    broker_event(b, "node_joined", NULL, 0, peer_to_json(p, util_now_ms()));
    sessions_schedule(b);
  }
}

static void on_heartbeat(broker_t *b, peer_t *p, const proto_msg_t *m) {
  nodes_set_stopping(b, p, PROTO_HAS(m, draining) && m->draining);
  if (p->role == PEER_NODE && m->steps)
    workflow_on_heartbeat(b, p, m->steps);
  if (PROTO_HAS(m, busy) && p->role == PEER_NODE && m->busy > p->busy)
    log_debug("%s reports %lld busy slots, we assigned %d", peer_label(p), (long long)m->busy, p->busy);
}

static void on_bye(broker_t *b, peer_t *p, const proto_msg_t *m) {
  (void)m;
  peer_remove(b, p, "said bye");
}

static void on_peer_error(broker_t *b, peer_t *p, const proto_msg_t *m) {
  (void)b;
  log_warn("%s reported an error: %s: %s", peer_label(p), m->code, m->detail);
}

/* Who may send a message type, and who handles it. A type not listed is refused. */
typedef enum { FROM_ANY, FROM_NODE, FROM_CONTROLLER } sender_t;

static const struct {
  proto_type_t type;
  sender_t from;
  void (*fn)(broker_t *b, peer_t *p, const proto_msg_t *m);
} handlers[] = {
    {PROTO_HEARTBEAT, FROM_ANY, on_heartbeat},
    {PROTO_BYE, FROM_ANY, on_bye},
    {PROTO_ERROR, FROM_ANY, on_peer_error},
    {PROTO_REQUEST, FROM_CONTROLLER, requests_handle},
    {PROTO_TURN_DONE, FROM_NODE, sessions_on_done},
    {PROTO_TURN_FAILED, FROM_NODE, sessions_on_failed},
    {PROTO_APPROVAL, FROM_NODE, sessions_on_approval},
    {PROTO_CHECKPOINT, FROM_NODE, workflow_on_node_msg},
    {PROTO_STEP_DONE, FROM_NODE, workflow_on_node_msg},
    {PROTO_STEP_FAILED, FROM_NODE, workflow_on_node_msg},
    {PROTO_RESTORED, FROM_NODE, workflow_on_node_msg},
};

/* True when p may send this type; else p has been told why not. */
static bool sender_ok(broker_t *b, peer_t *p, sender_t from, int64_t ref) {
  if (from == FROM_NODE && p->role != PEER_NODE) {
    broker_send_error(b, p->id, p->idlen, PROTO_ERR_unexpected, "only nodes report turns", ref);
    return false;
  }
  if (from == FROM_CONTROLLER && p->role != PEER_CONTROLLER) {
    broker_send_error(b, p->id, p->idlen, PROTO_ERR_unexpected, "only controllers send requests", ref);
    return false;
  }
  return true;
}

/* Handles one decoded message from a registered peer. */
static void dispatch_msg(broker_t *b, peer_t *p, const proto_msg_t *m) {
  for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
    if (handlers[i].type != m->type)
      continue;
    if (sender_ok(b, p, handlers[i].from, m->id))
      handlers[i].fn(b, p, m);
    return;
  }
  char detail[128];
  snprintf(detail, sizeof detail, "the broker does not accept \"%s\" messages", proto_type_name(m->type));
  broker_send_error(b, p->id, p->idlen, PROTO_ERR_unexpected, detail, m->id);
}

#define ROUTABLE (PROTO_PEEK_SESSION | PROTO_PEEK_TURN | PROTO_PEEK_ATTEMPT)

/* The hot path: a delta is routed from the few fields proto_peek reads,
 * without decoding it, and forwarded as it came. Returns false when the
 * frame is no routable delta (it then takes the decoding path). */
static bool route_delta(broker_t *b, const uint8_t *id, size_t idlen, const void *data, size_t len) {
  proto_peek_t pk;
  proto_err_t perr;
  if (proto_peek(data, len, &pk, &perr) != PROTO_OK || pk.type != PROTO_DELTA || (pk.has & ROUTABLE) != ROUTABLE)
    return false;
  peer_t *p = peer_find(b, id, idlen);
  if (!p) {
    broker_send_error(b, id, idlen, PROTO_ERR_hello_first, "unknown peer: send hello first", pk.id);
    return true;
  }
  p->last_seen = util_now_ms();
  if (!sender_ok(b, p, FROM_NODE, pk.id))
    return true;
  sessions_route_t r = {pk.session, pk.session_len, pk.turn, pk.attempt};
  sessions_on_delta(b, p, &r, data, len);
  return true;
}

void broker_handle_frame(broker_t *b, const uint8_t *id, size_t idlen, const void *data, size_t len) {
  if (route_delta(b, id, idlen, data, len))
    return;
  proto_msg_t *m = NULL;
  proto_err_t perr;
  if (proto_decode(data, len, &m, &perr) != PROTO_OK) {
    log_limited(&b->rejected_log, LOG_WARN, "rejected a message: %s", perr.text);
    obs_rejected(b->obs);
    broker_send_error(b, id, idlen, proto_errcode_name(perr.code), perr.text, 0);
    return;
  }
  peer_t *p = peer_find(b, id, idlen);
  if (m->type == PROTO_HELLO) {
    on_hello(b, id, idlen, m);
  } else if (!p) {
    broker_send_error(b, id, idlen, PROTO_ERR_hello_first, "unknown peer: send hello first", m->id);
  } else {
    p->last_seen = util_now_ms();
    dispatch_msg(b, p, m);
  }
  proto_msg_destroy(&m);
}

/* Reads one routed message (identity + payload) and handles it. The frame is
 * not decoded here: broker_handle_frame routes a delta by peeking. False when
 * no message was waiting. */
static bool on_router(broker_t *b) {
  uint8_t id[PEER_ID_MAX];
  size_t idlen = sizeof id;
  zmq_msg_t frame;
  zmq_msg_init(&frame);
  proto_err_t perr;
  int rc = proto_recv(b->router, id, &idlen, &frame, NULL, &perr, ZMQ_DONTWAIT);
  if (rc == -EPROTO) {
    log_limited(&b->rejected_log, LOG_WARN, "rejected a message: %s", perr.text);
    obs_rejected(b->obs);
    broker_send_error(b, id, idlen, proto_errcode_name(perr.code), perr.text, 0);
  }
  if (rc == 1) {
    b->frame = &frame;
    broker_handle_frame(b, id, idlen, zmq_msg_data(&frame), zmq_msg_size(&frame));
    b->frame = NULL;
  }
  zmq_msg_close(&frame);
  return rc == 1 || rc == -EPROTO;
}

static void heartbeat_all(broker_t *b) {
  proto_msg_t *hb = proto_msg_new(PROTO_HEARTBEAT);
  if (!hb)
    return;
  proto_set_str(hb, PROTO_F_epoch, b->epoch);
  peer_t *next;
  for (peer_t *p = b->peers; p; p = next) {
    next = p->next;
    broker_send(b, p, hb);
  }
  proto_msg_destroy(&hb);
}

static void expire_peers(broker_t *b, int64_t now) {
  int64_t limit = (int64_t)b->opts.heartbeat_ms * b->opts.liveness + b->opts.heartbeat_ms / 2;
  peer_t *next;
  for (peer_t *p = b->peers; p; p = next) {
    next = p->next;
    if (now - p->last_seen > limit)
      peer_remove(b, p, "missed heartbeats");
  }
}

/* The loop waits with poll(2) on the sockets' ZMQ_FDs. Such an fd only says
 * that its socket's state may have changed, and says it once: a socket is
 * read until it has nothing left (a read that finds nothing, or ZMQ_EVENTS
 * without ZMQ_POLLIN), else its fd would not wake the loop again. Waiting
 * this way costs one poll(2) where zmq_poll() checked every socket's
 * ZMQ_EVENTS before and after it (a system call each). */
enum { FD_ROUTER, FD_ZAP, FD_MONITOR, FD_HTTP, N_FDS };

#define ROUTER_BATCH 1000 /* messages read in a row: heartbeats keep their rhythm under load */
#define ZAP_BATCH 64      /* ZAP requests (handshakes) handled in a row */

static int socket_fd(void *sock) {
  int fd = -1;
  size_t len = sizeof fd;
  return sock && zmq_getsockopt(sock, ZMQ_FD, &fd, &len) == 0 ? fd : -1;
}

/* Handles the ROUTER's messages until none waits (true) or a batch is done
 * (false: more may wait). Removed peers are freed between messages. */
static bool drain_router(broker_t *b) {
  for (int i = 0; i < ROUTER_BATCH; i++) {
    if (!on_router(b))
      return true;
    peers_sweep(b);
  }
  return false;
}

/* Handles what waits on the ZAP and monitor sockets (when their fds woke the
 * loop, or a batch was left unfinished). True when all was handled. */
static bool drain_zap(broker_t *b, bool zap, bool monitor) {
  void *mon = zap_monitor_socket(b);
  zap = zap && b->zap;
  for (int i = 0; zap && i < ZAP_BATCH && proto_readable(b->zap); i++)
    zap_handle(b);
  if (monitor && mon && proto_readable(mon))
    zap_monitor_handle(b);
  return !(zap && proto_readable(b->zap)) && !(monitor && mon && proto_readable(mon));
}

/* Timers: heartbeats, dead peers, queued turns, workflows, the keys file. */
static void on_timer(broker_t *b, int64_t now) {
  heartbeat_all(b);
  expire_peers(b, now);
  sessions_tick(b, now);
  workflow_timer(b, now);
  zap_check(b, false);
  peers_sweep(b);
}

/* How long the loop may wait (ms): until the next heartbeat, HTTP timer or catch-up try. */
static long wait_ms(broker_t *b, int64_t next_hb, long http_due) {
  long timeout = (long)(next_hb - util_now_ms());
  if (http_due >= 0 && http_due < timeout)
    timeout = http_due;
  int catch_up = outbox_catch_up(b, util_now_ms());
  if (catch_up >= 0 && catch_up < timeout)
    timeout = catch_up;
  return timeout < 0 ? 0 : timeout;
}

int broker_run(broker_t *b, volatile int *stop) {
  int64_t next_hb = util_now_ms();
  struct pollfd fds[N_FDS] = {{socket_fd(b->router), POLLIN, 0},
                              {socket_fd(b->zap), POLLIN, 0},
                              {socket_fd(zap_monitor_socket(b)), POLLIN, 0},
                              {http_fd(b), POLLIN, 0}}; /* a negative fd is left out */
  bool zap_left = true;                                 /* ZAP or monitor work not yet looked at */
  log_info("broker %s ready (epoch %s, state %s)", CADRE_VERSION, b->epoch, b->opts.state_dir);
  while (!*stop) {
    int64_t now = util_now_ms();
    if (now >= next_hb) {
      on_timer(b, now);
      next_hb = now + b->opts.heartbeat_ms;
    }
    if (b->opts.reload && *b->opts.reload) {
      *b->opts.reload = 0;
      log_info("SIGHUP: reading %s again", b->authorized_path);
      zap_check(b, true);
      peers_sweep(b);
    }
    long http_due = http_timeout_ms(b), timeout = wait_ms(b, next_hb, http_due);
    /* Last before the wait: whatever sent on the ROUTER above may have taken its fd's wake-up. */
    if (!drain_router(b) || zap_left)
      timeout = 0;
    int rc = poll(fds, N_FDS, (int)timeout);
    if (rc < 0) {
      if (errno == EINTR)
        continue;
      log_error("poll failed: %s", strerror(errno));
      return -1;
    }
    zap_left = !drain_zap(b, zap_left || fds[FD_ZAP].revents, zap_left || fds[FD_MONITOR].revents);
    if ((fds[FD_HTTP].revents & POLLIN) || (http_due >= 0 && http_timeout_ms(b) == 0))
      http_run(b);
  }
  log_info("broker stopping");
  proto_msg_t *bye = proto_msg_new(PROTO_BYE);
  if (bye) {
    proto_set_str(bye, PROTO_F_detail, "broker shutting down");
    peer_t *next;
    for (peer_t *p = b->peers; p; p = next) {
      next = p->next;
      broker_send(b, p, bye);
    }
    proto_msg_destroy(&bye);
  }
  return 0;
}
