/* agentd.c: the daemon's main thread: broker connection, heartbeats,
 * re-registration, and handing turns to slot workers. */
#include "agentd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "proto.h"
#include "snapshot.h"
#include "util.h"

#define EVENTS_ENDPOINT_FMT "inproc://agentd-events-%p"

struct agentd {
  agentd_opts_t opts;
  void *ctx, *dealer, *pull;
  keys_pair_t keys;
  char broker_pub[KEYS_Z85_LEN + 1];
  char events_endpoint[64];
  char host[256];
  char workspace[PATH_MAX];
  jobq_t q;
  pthread_t *threads;
  bool registered;
  char epoch[64];
  int heartbeat_ms;
  int64_t last_heard;   /* monotonic ms of the last message from the broker */
  int64_t hello_sent;
  int64_t next_hb;      /* when our next heartbeat is due */
  int64_t next_msg_id;
};

static int connect_broker(agentd_t *d, char *err, size_t errlen) {
  if (d->dealer)
    zmq_close(d->dealer);
  d->dealer = zmq_socket(d->ctx, ZMQ_DEALER);
  int hwm = 100000, ivl = 200, ivl_max = 2000;
  if (!d->dealer || proto_socket_setup(d->dealer) < 0 ||
      zmq_setsockopt(d->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
      zmq_setsockopt(d->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) < 0 ||
      zmq_setsockopt(d->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) < 0 ||
      keys_setup_client(d->dealer, &d->keys, d->broker_pub) < 0 || zmq_connect(d->dealer, d->opts.broker) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", d->opts.broker, zmq_strerror(errno));
    return -1;
  }
  d->registered = false;
  d->hello_sent = 0;
  return 0;
}

agentd_t *agentd_new(const agentd_opts_t *opts, char *err, size_t errlen) {
  agentd_t *d = calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->opts = *opts;
  d->q.ws.root_fd = -1;
  d->heartbeat_ms = 1000;
  util_hostname(d->host, sizeof d->host);
  if (!realpath(opts->workspace, d->workspace)) {
    snprintf(err, errlen, "%s: workspace is not usable: %s", opts->workspace, strerror(errno));
    goto fail;
  }
  if (keys_load_pair(opts->key_file, &d->keys, err, errlen) < 0 ||
      keys_load_public(opts->broker_key, d->broker_pub, err, errlen) < 0)
    goto fail;
  d->ctx = zmq_ctx_new();
  snprintf(d->events_endpoint, sizeof d->events_endpoint, EVENTS_ENDPOINT_FMT, (void *)d);
  d->pull = zmq_socket(d->ctx, ZMQ_PULL);
  if (!d->pull || proto_socket_setup(d->pull) < 0 || zmq_bind(d->pull, d->events_endpoint) < 0) {
    snprintf(err, errlen, "cannot set up the worker socket: %s", zmq_strerror(errno));
    goto fail;
  }
  if (connect_broker(d, err, errlen) < 0)
    goto fail;
  tools_opts_t to = {.workspace = d->workspace};
  d->q.tools = tools_new(&to, err, errlen);
  if (!d->q.tools || ws_init(&d->q.ws, d->workspace, err, errlen) < 0)
    goto fail;
  if (snap_init() < 0) {
    snprintf(err, errlen, "cannot initialise libsodium");
    goto fail;
  }
  pthread_mutex_init(&d->q.lock, NULL);
  pthread_cond_init(&d->q.cond, NULL);
  pthread_cond_init(&d->q.approval, NULL);
  d->q.ctx = d->ctx;
  d->q.events_endpoint = d->events_endpoint;
  d->q.connect_timeout_ms = opts->connect_timeout_ms;
  d->q.stall_timeout_ms = opts->stall_timeout_ms;
  d->threads = calloc((size_t)opts->slots + 1, sizeof *d->threads); /* + the restore worker */
  if (!d->threads || workers_start(&d->q, d->threads, opts->slots) < 0) {
    snprintf(err, errlen, "cannot start %d worker threads", opts->slots);
    goto fail;
  }
  return d;
fail:
  agentd_destroy(&d);
  return NULL;
}

void agentd_destroy(agentd_t **self_p) {
  if (!self_p || !*self_p)
    return;
  agentd_t *d = *self_p;
  if (d->threads) {
    workers_stop(&d->q, d->threads, d->opts.slots);
    free(d->threads);
    pthread_mutex_destroy(&d->q.lock);
    pthread_cond_destroy(&d->q.cond);
    pthread_cond_destroy(&d->q.approval);
  }
  tools_destroy(&d->q.tools);
  ws_fini(&d->q.ws);
  while (d->q.jobs) {
    job_t *j = d->q.jobs;
    d->q.jobs = j->next;
    job_free(j);
  }
  if (d->dealer)
    zmq_close(d->dealer);
  if (d->pull)
    zmq_close(d->pull);
  if (d->ctx)
    zmq_ctx_term(d->ctx);
  keys_wipe(&d->keys);
  free(d);
  *self_p = NULL;
}

static int send_msg(agentd_t *d, proto_msg_t *m) {
  m->id = ++d->next_msg_id;
  int rc = proto_send(d->dealer, NULL, 0, m, ZMQ_DONTWAIT);
  if (rc < 0 && rc != -EAGAIN)
    log_warn("send %s to the broker failed: %s", proto_type_name(m->type), strerror(-rc));
  return rc;
}

/* Busy slots: turns and steps not finished (restores take no slot); also reaps finished jobs. */
static int count_busy(agentd_t *d) {
  int busy = 0;
  pthread_mutex_lock(&d->q.lock);
  for (job_t **pp = &d->q.jobs; *pp;) {
    job_t *j = *pp;
    if (j->finished) {
      *pp = j->next;
      job_free(j);
      continue;
    }
    busy += j->kind != JOB_RESTORE;
    pp = &j->next;
  }
  pthread_mutex_unlock(&d->q.lock);
  return busy;
}

static void send_hello(agentd_t *d) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  if (!m)
    return;
  proto_set_str(m, PROTO_F_role, "node");
  proto_set_str(m, PROTO_F_name, d->opts.name);
  proto_set_str(m, PROTO_F_version, CADRE_VERSION);
  proto_set_str(m, PROTO_F_host, d->host);
  PROTO_SET(m, slots, d->opts.slots);
  proto_set_json(m, PROTO_F_models, json_incref(d->opts.models));
  proto_set_json(m, PROTO_F_providers, json_incref(d->opts.providers));
  json_t *names = json_array();
#define AGENTD_TOOL_NAME(n) json_array_append_new(names, json_string(#n));
  CADRE_NODE_TOOLS(AGENTD_TOOL_NAME)
#undef AGENTD_TOOL_NAME
  proto_set_json(m, PROTO_F_tools, names);
  proto_set_str(m, PROTO_F_workspace, d->workspace);
  send_msg(d, m);
  proto_msg_destroy(&m);
  d->hello_sent = util_now_ms();
  d->registered = false;
}

static void send_heartbeat(agentd_t *d) {
  proto_msg_t *m = proto_msg_new(PROTO_HEARTBEAT);
  if (!m)
    return;
  PROTO_SET(m, busy, count_busy(d));
  send_msg(d, m);
  proto_msg_destroy(&m);
}

/* The API key for a turn's profile, resolved on this host. Caller frees. */
static char *resolve_key(agentd_t *d, const json_t *profile) {
  const char *provider = json_string_value(json_object_get(profile, "provider"));
  const char *name = json_string_value(json_object_get(profile, "name"));
  const char *own = NULL;
  if (d->opts.config && name) {
    const cadre_profile_t *p = config_profile(d->opts.config, name);
    own = p ? p->api_key : NULL;
  }
  const char *key = secrets_key_for(d->opts.secrets, provider ? provider : "", own);
  return key ? strdup(key) : NULL;
}

/* Appends a job to the queue and wakes the workers (all of them: slot
 * workers and the restore worker wait on the same condition). */
static void enqueue(agentd_t *d, job_t *j) {
  atomic_init(&j->cancel, false);
  pthread_mutex_lock(&d->q.lock);
  job_t **pp = &d->q.jobs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = j;
  pthread_cond_broadcast(&d->q.cond);
  pthread_mutex_unlock(&d->q.lock);
}

static void on_turn(agentd_t *d, const proto_msg_t *m) {
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return;
  j->kind = JOB_TURN;
  j->turn = m->turn;
  j->attempt = m->attempt;
  j->session = strdup(m->session);
  j->profile = json_incref(m->profile);
  j->messages = json_incref(m->messages);
  j->tools = m->tools ? json_incref(m->tools) : NULL;
  j->api_key = resolve_key(d, m->profile);
  enqueue(d, j);
}

static void on_cancel(agentd_t *d, const proto_msg_t *m) {
  pthread_mutex_lock(&d->q.lock);
  for (job_t *j = d->q.jobs; j; j = j->next) {
    if (j->kind == JOB_TURN && j->turn == m->turn && (!PROTO_HAS(m, attempt) || j->attempt == m->attempt)) {
      atomic_store(&j->cancel, true);
      pthread_cond_broadcast(&d->q.approval);
      if (!j->taken)
        j->taken = j->finished = true; /* never started: just drop it */
      log_info("turn %lld cancelled by the broker", (long long)j->turn);
    }
  }
  pthread_mutex_unlock(&d->q.lock);
}

/* The user's answer to an approval: wakes the worker waiting for it. */
static void on_approval_reply(agentd_t *d, const proto_msg_t *m) {
  pthread_mutex_lock(&d->q.lock);
  for (job_t *j = d->q.jobs; j; j = j->next) {
    if (j->kind == JOB_TURN && j->turn == m->turn && j->attempt == m->attempt) {
      j->approval_allow = strcmp(m->kind, "allow") == 0;
      j->approval_seq = m->seq;
    }
  }
  pthread_cond_broadcast(&d->q.approval);
  pthread_mutex_unlock(&d->q.lock);
}

/* The unfinished step job for workflow/step/attempt of m. Called with the lock held. */
static job_t *find_step(agentd_t *d, const proto_msg_t *m) {
  for (job_t *j = d->q.jobs; j; j = j->next)
    if (j->kind == JOB_STEP && !j->finished && j->msg->workflow == m->workflow && j->msg->step == m->step &&
        j->msg->attempt == m->attempt)
      return j;
  return NULL;
}

/* step_failed "cancelled" for a step that never started (the worker reports the others). */
static void send_step_cancelled(agentd_t *d, const proto_msg_t *run) {
  proto_msg_t *m = proto_msg_new(PROTO_STEP_FAILED);
  if (!m)
    return;
  PROTO_SET(m, workflow, run->workflow);
  PROTO_SET(m, step, run->step);
  PROTO_SET(m, attempt, run->attempt);
  proto_set_str(m, PROTO_F_code, "cancelled");
  proto_set_str(m, PROTO_F_detail, "the step was cancelled before it started");
  PROTO_SET(m, retryable, false);
  send_msg(d, m);
  proto_msg_destroy(&m);
}

/* step_run with payload {cancel: true}: sets the step's cancel flag. A step
 * that already ended is left alone (its step_done or step_failed is on its way). */
static void on_step_cancel(agentd_t *d, const proto_msg_t *m) {
  pthread_mutex_lock(&d->q.lock);
  job_t *j = find_step(d, m);
  bool queued = j && !j->taken;
  if (j) {
    atomic_store(&j->cancel, true);
    if (queued)
      j->taken = j->finished = true; /* never started: just drop it */
    pthread_cond_broadcast(&d->q.approval);
  }
  pthread_mutex_unlock(&d->q.lock);
  if (queued)
    send_step_cancelled(d, m);
  log_info("workflow %lld step %lld (attempt %lld): cancel from the broker%s", (long long)m->workflow,
           (long long)m->step, (long long)m->attempt, j ? "" : " for a step not running here (ignored)");
}

/* step_run: queued for a slot worker; takes over *mp. A repeat of a step that
 * is still queued or running here is ignored. */
static void on_step_run(agentd_t *d, proto_msg_t **mp) {
  proto_msg_t *m = *mp;
  if (json_is_true(json_object_get(m->payload, "cancel"))) {
    on_step_cancel(d, m);
    return;
  }
  pthread_mutex_lock(&d->q.lock);
  bool running = find_step(d, m) != NULL;
  pthread_mutex_unlock(&d->q.lock);
  job_t *j = running ? NULL : calloc(1, sizeof *j);
  if (running)
    log_warn("workflow %lld step %lld (attempt %lld) is already here; ignored the repeat", (long long)m->workflow,
             (long long)m->step, (long long)m->attempt);
  if (!j)
    return;
  j->kind = JOB_STEP;
  j->msg = m;
  *mp = NULL;
  enqueue(d, j);
}

/* checkpoint_ack: wakes the step waiting for it. */
static void on_checkpoint_ack(agentd_t *d, const proto_msg_t *m) {
  pthread_mutex_lock(&d->q.lock);
  job_t *j = find_step(d, m);
  if (j && m->seq > j->ack_seq)
    j->ack_seq = m->seq;
  pthread_cond_broadcast(&d->q.approval);
  pthread_mutex_unlock(&d->q.lock);
  if (!j)
    log_debug("checkpoint_ack for workflow %lld step %lld: no such step here", (long long)m->workflow,
              (long long)m->step);
}

/* restore: queued for the restore worker (file IO off this thread); takes over *mp. */
static void on_restore(agentd_t *d, proto_msg_t **mp) {
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return;
  j->kind = JOB_RESTORE;
  j->msg = *mp;
  *mp = NULL;
  enqueue(d, j);
}

static void on_welcome(agentd_t *d, const proto_msg_t *m) {
  bool new_broker = strcmp(d->epoch, m->epoch) != 0;
  snprintf(d->epoch, sizeof d->epoch, "%s", m->epoch);
  if (m->heartbeat_ms >= 50 && m->heartbeat_ms <= 60000)
    d->heartbeat_ms = (int)m->heartbeat_ms;
  /* The broker's interval applies from now, not after the default one runs out. */
  if (d->next_hb > util_now_ms() + d->heartbeat_ms)
    d->next_hb = util_now_ms() + d->heartbeat_ms;
  d->registered = true;
  log_info("registered with broker %s as %s (epoch %s%s)", d->opts.broker, d->opts.name, m->epoch,
           new_broker ? ", new" : "");
}

static void on_broker(agentd_t *d) {
  zmq_msg_t frame;
  zmq_msg_init(&frame);
  if (zmq_msg_recv(&frame, d->dealer, ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(&frame);
    return;
  }
  proto_msg_t *m = NULL;
  proto_err_t perr;
  if (proto_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &m, &perr) != PROTO_OK) {
    log_warn("ignored a malformed message from the broker: %s", perr.text);
    zmq_msg_close(&frame);
    return;
  }
  zmq_msg_close(&frame);
  d->last_heard = util_now_ms();
  switch (m->type) {
  case PROTO_WELCOME: on_welcome(d, m); break;
  case PROTO_HEARTBEAT:
    if (m->epoch && d->registered && strcmp(m->epoch, d->epoch) != 0) {
      log_info("broker restarted (epoch %s); registering again", m->epoch);
      send_hello(d);
    }
    break;
  case PROTO_TURN: on_turn(d, m); break;
  case PROTO_CANCEL: on_cancel(d, m); break;
  case PROTO_APPROVAL_REPLY: on_approval_reply(d, m); break;
  case PROTO_STEP_RUN: on_step_run(d, &m); break;
  case PROTO_CHECKPOINT_ACK: on_checkpoint_ack(d, m); break;
  case PROTO_RESTORE: on_restore(d, &m); break;
  case PROTO_BYE: log_info("broker says bye (%s); will reconnect", m->detail ? m->detail : ""); break;
  case PROTO_ERROR:
    if (strcmp(m->code, "hello_first") == 0) {
      if (util_now_ms() - d->hello_sent > 500) {
        log_info("broker does not know us (restarted?); registering again");
        send_hello(d);
      }
    } else {
      log_warn("broker error: %s: %s", m->code, m->detail);
    }
    break;
  default: log_warn("ignored an unexpected %s from the broker", proto_type_name(m->type));
  }
  proto_msg_destroy(&m);
}

/* Forwards one encoded message from a worker to the broker, unchanged. */
static void on_worker(agentd_t *d) {
  zmq_msg_t frame;
  zmq_msg_init(&frame);
  if (zmq_msg_recv(&frame, d->pull, ZMQ_DONTWAIT) >= 0) {
    int rc = proto_send_raw(d->dealer, NULL, 0, zmq_msg_data(&frame), zmq_msg_size(&frame), ZMQ_DONTWAIT);
    if (rc < 0)
      log_warn("cannot forward a worker message to the broker: %s", strerror(-rc));
  }
  zmq_msg_close(&frame);
}

/* Liveness: no word from the broker for 3 intervals means it is gone; say hello
 * again (the DEALER reconnects by itself; the new broker needs our hello). */
static void check_liveness(agentd_t *d, int64_t now) {
  int64_t silent = now - d->last_heard;
  if (!d->registered) {
    if (now - d->hello_sent >= 3 * d->heartbeat_ms)
      send_hello(d);
    return;
  }
  if (silent > 3 * d->heartbeat_ms + d->heartbeat_ms / 2) {
    log_warn("no word from the broker for %lld ms; registering again", (long long)silent);
    send_hello(d);
  }
}

int agentd_run(agentd_t *d, volatile int *stop) {
  send_hello(d);
  d->last_heard = util_now_ms();
  d->next_hb = util_now_ms() + d->heartbeat_ms;
  while (!*stop) {
    int64_t now = util_now_ms();
    if (now >= d->next_hb) {
      send_heartbeat(d);
      check_liveness(d, now);
      d->next_hb = now + d->heartbeat_ms;
    }
    zmq_pollitem_t items[] = {{d->dealer, 0, ZMQ_POLLIN, 0}, {d->pull, 0, ZMQ_POLLIN, 0}};
    long timeout = (long)(d->next_hb - util_now_ms());
    if (zmq_poll(items, 2, timeout < 0 ? 0 : timeout) < 0) {
      if (errno == EINTR)
        continue;
      log_error("poll failed: %s", zmq_strerror(errno));
      return -1;
    }
    for (int i = 0; i < 256 && (items[1].revents & ZMQ_POLLIN); i++) {
      int ev = 0;
      size_t l = sizeof ev;
      zmq_getsockopt(d->pull, ZMQ_EVENTS, &ev, &l);
      if (!(ev & ZMQ_POLLIN))
        break;
      on_worker(d);
    }
    for (int i = 0; i < 256 && (items[0].revents & ZMQ_POLLIN); i++) {
      int ev = 0;
      size_t l = sizeof ev;
      zmq_getsockopt(d->dealer, ZMQ_EVENTS, &ev, &l);
      if (!(ev & ZMQ_POLLIN))
        break;
      on_broker(d);
    }
  }
  proto_msg_t *bye = proto_msg_new(PROTO_BYE);
  if (bye) {
    proto_set_str(bye, PROTO_F_detail, "agent daemon stopping");
    send_msg(d, bye);
    proto_msg_destroy(&bye);
  }
  return 0;
}
