/* agentd.c: the daemon's main thread: the broker link, handing turns, steps
 * and restores to the workers, forwarding what they produce. */
#include "agentd.h"
#include "mcp.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "jobs.h"
#include "log.h"
#include "proto.h"
#include "proto_link.h"
#include "sandbox.h"
#include "snapshot.h"
#include "tools.h"
#include "util.h"
#include "worker.h"

#define EVENTS_ENDPOINT_FMT "inproc://agentd-events-%p"

struct agentd {
  agentd_opts_t opts;
  void *ctx, *pull;
  proto_link_t *link;
  char events_endpoint[64];
  char workspace[PATH_MAX];
  jobq_t q;
  pthread_t *threads;
  int64_t drain_started; /* monotonic ms; 0: not draining */
  sandbox_t *sandbox;
  char sandbox_state[512]; /* "on", "off" (--no-sandbox), "unavailable: why" */
};

static proto_msg_t *node_hello(agentd_t *d) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  if (!m)
    return NULL;
  char host[256];
  util_hostname(host, sizeof host);
  proto_set_str(m, PROTO_F_role, "node");
  proto_set_str(m, PROTO_F_name, d->opts.name);
  proto_set_str(m, PROTO_F_version, CADRE_VERSION);
  proto_set_str(m, PROTO_F_host, host);
  PROTO_SET(m, slots, d->opts.slots);
  proto_set_json(m, PROTO_F_models, json_incref(d->opts.models));
  proto_set_json(m, PROTO_F_providers, json_incref(d->opts.providers));
  json_t *names = json_array();
#define AGENTD_TOOL_NAME(n) json_array_append_new(names, json_string(#n));
  CADRE_NODE_TOOLS(AGENTD_TOOL_NAME)
#undef AGENTD_TOOL_NAME
  proto_set_json(m, PROTO_F_tools, names);
  proto_set_str(m, PROTO_F_workspace, d->workspace);
  if (json_object_size(d->opts.labels) > 0)
    proto_set_json(m, PROTO_F_labels, json_incref(d->opts.labels));
  proto_set_str(m, PROTO_F_sandbox, d->sandbox_state);
  return m;
}

/* Our heartbeats say how many slots are busy (and finished jobs are reaped
 * then), whether we drain, and which workflow steps we hold: a broker that
 * restarted, or lost us for a while, learns from them which steps still run
 * here. */
static void fill_heartbeat(proto_msg_t *hb, void *arg) {
  agentd_t *d = arg;
  PROTO_SET(hb, busy, jobq_reap(&d->q));
  if (d->drain_started)
    PROTO_SET(hb, draining, true);
  proto_set_json(hb, PROTO_F_steps, jobq_held_steps(&d->q));
}

/* SIGTERM: the broker hears at once that we take no new work. */
static void start_drain(agentd_t *d) {
  d->drain_started = util_now_ms();
  int busy = jobq_reap(&d->q);
  log_info("draining: %d running job%s to finish (at most %ld s), then exit", busy, busy == 1 ? "" : "s",
           d->opts.drain_timeout_ms / 1000);
  proto_msg_t *hb = proto_msg_new(PROTO_HEARTBEAT);
  if (hb) {
    fill_heartbeat(hb, d);
    proto_link_send(d->link, hb);
    proto_msg_destroy(&hb);
  }
}

/* While draining: true once the running work is done or the time is up. */
static bool drained(agentd_t *d) {
  int busy = jobq_reap(&d->q);
  int64_t took = util_now_ms() - d->drain_started;
  if (busy > 0 && took < d->opts.drain_timeout_ms)
    return false;
  if (busy > 0)
    log_warn("drain timeout after %lld ms: %d job%s still running are cut (the broker runs them again)",
             (long long)took, busy, busy == 1 ? "" : "s");
  else
    log_info("drained in %lld ms", (long long)took);
  return true;
}

static int connect_broker(agentd_t *d, char *err, size_t errlen) {
  proto_msg_t *hello = node_hello(d);
  proto_link_opts_t lo = {.endpoint = d->opts.broker,
                          .key_file = d->opts.key_file,
                          .broker_key = d->opts.broker_key,
                          .reconnect_ivl_ms = 200,
                          .reconnect_ivl_max_ms = 2000,
                          .sndhwm = 100000,
                          .on_heartbeat = fill_heartbeat,
                          .arg = d};
  d->link = hello ? proto_link_new(d->ctx, &lo, &hello, err, errlen) : NULL;
  if (!hello)
    snprintf(err, errlen, "out of memory");
  proto_msg_destroy(&hello);
  return d->link ? 0 : -1;
}

/* Makes the command sandbox (unless --no-sandbox); where it cannot be made,
 * commands are refused with the reason written into refuse. */
static void setup_sandbox(agentd_t *d, char *refuse, size_t len) {
  if (d->opts.no_sandbox) {
    snprintf(d->sandbox_state, sizeof d->sandbox_state, "off");
    log_warn("--no-sandbox: commands run unconfined, as this daemon's user, with its view of the host");
    return;
  }
  char why[400];
  sandbox_opts_t so = {.workspace = d->workspace,
                       .hidden = d->opts.hidden,
                       .writable = d->opts.writable,
                       .readable = d->opts.readable,
                       .memory = d->opts.sandbox_memory,
                       .procs = d->opts.sandbox_procs};
  d->sandbox = sandbox_new(&so, why, sizeof why);
  if (d->sandbox) {
    snprintf(d->sandbox_state, sizeof d->sandbox_state, "on");
    return;
  }
  snprintf(d->sandbox_state, sizeof d->sandbox_state, "unavailable: %s", why);
  snprintf(refuse, len,
           "the command sandbox cannot be made (%s); install bubblewrap and allow user namespaces, or start "
           "cadre-agentd with --no-sandbox to run commands unconfined",
           why);
  log_error("commands will be refused: %s", refuse);
}

agentd_t *agentd_new(const agentd_opts_t *opts, char *err, size_t errlen) {
  agentd_t *d = calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->opts = *opts;
  d->q.ws.root_fd = -1;
  if (!realpath(opts->workspace, d->workspace)) {
    snprintf(err, errlen, "%s: workspace is not usable: %s", opts->workspace, strerror(errno));
    goto fail;
  }
  d->ctx = zmq_ctx_new();
  snprintf(d->events_endpoint, sizeof d->events_endpoint, EVENTS_ENDPOINT_FMT, (void *)d);
  d->pull = zmq_socket(d->ctx, ZMQ_PULL);
  if (!d->pull || proto_socket_setup(d->pull) < 0 || zmq_bind(d->pull, d->events_endpoint) < 0) {
    snprintf(err, errlen, "cannot set up the worker socket: %s", zmq_strerror(errno));
    goto fail;
  }
  char refuse[600];
  setup_sandbox(d, refuse, sizeof refuse);
  tools_opts_t to = {.workspace = d->workspace,
                     .sandbox = d->sandbox,
                     .no_commands = strcmp(d->sandbox_state, "on") && !opts->no_sandbox ? refuse : NULL,
                     .hidden = opts->hidden,
                     .secret_values = opts->secret_values};
  d->q.tools = tools_new(&to, err, errlen);
  if (!d->q.tools || ws_init(&d->q.ws, d->workspace, err, errlen) < 0)
    goto fail;
  if (snap_init() < 0) {
    snprintf(err, errlen, "cannot initialise libsodium");
    goto fail;
  }
  jobq_init(&d->q);
  d->q.ctx = d->ctx;
  d->q.events_endpoint = d->events_endpoint;
  d->q.connect_timeout_ms = opts->connect_timeout_ms;
  d->q.stall_timeout_ms = opts->stall_timeout_ms;
  d->q.turn_timeout_ms = opts->turn_timeout_ms;
  if (!(d->q.mcp = mcp_new(d->q.tools, opts->config))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  d->threads = calloc((size_t)opts->slots + 1, sizeof *d->threads); /* + the restore worker */
  if (!d->threads || workers_start(&d->q, d->threads, opts->slots) < 0) {
    snprintf(err, errlen, "cannot start %d worker threads", opts->slots);
    goto fail;
  }
  if (connect_broker(d, err, errlen) < 0)
    goto fail;
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
    jobq_fini(&d->q);
  }
  mcp_destroy(&d->q.mcp); /* stops the MCP servers; after the workers, before the tools */
  tools_destroy(&d->q.tools);
  sandbox_destroy(&d->sandbox);
  ws_fini(&d->q.ws);
  proto_link_destroy(&d->link);
  if (d->pull)
    zmq_close(d->pull);
  if (d->ctx)
    zmq_ctx_term(d->ctx);
  free(d);
  *self_p = NULL;
}

/* Sends to the broker; a failure is logged (a full queue is not worth a line). */
static int send_msg(agentd_t *d, proto_msg_t *m) {
  int rc = proto_link_send(d->link, m);
  if (rc < 0 && rc != -EAGAIN)
    log_warn("send %s to the broker failed: %s", proto_type_name(m->type), strerror(-rc));
  return rc;
}

/* The API key for a turn's profile, resolved on this host. Caller frees. */
static char *resolve_key(agentd_t *d, const json_t *profile) {
  proto_profile_t pp;
  proto_profile_read(profile, &pp);
  const char *provider = pp.provider, *name = pp.name;
  const char *own = NULL;
  if (d->opts.config && name) {
    const cadre_profile_t *p = config_profile(d->opts.config, name);
    own = p ? p->api_key : NULL;
  }
  const char *key = secrets_key_for(d->opts.secrets, provider ? provider : "", own);
  return key ? strdup(key) : NULL;
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
  j->rounds = PROTO_HAS(m, rounds) && m->rounds > 0 ? m->rounds : 0;
  j->api_key = resolve_key(d, m->profile);
  jobq_add(&d->q, j);
}

static void on_cancel(agentd_t *d, const proto_msg_t *m) {
  if (jobq_cancel_turn(&d->q, m) > 0)
    log_info("turn %lld cancelled by the broker", (long long)m->turn);
}

/* step_failed "cancelled" for a step that never started (the worker reports the others). */
static void send_step_cancelled(agentd_t *d, const proto_msg_t *run) {
  proto_msg_t *m = proto_msg_new(PROTO_STEP_FAILED);
  if (!m)
    return;
  PROTO_SET(m, workflow, run->workflow);
  PROTO_SET(m, step, run->step);
  PROTO_SET(m, attempt, run->attempt);
  proto_set_str(m, PROTO_F_code, PROTO_ERR_cancelled);
  proto_set_str(m, PROTO_F_detail, "the step was cancelled before it started");
  PROTO_SET(m, retryable, false);
  send_msg(d, m);
  proto_msg_destroy(&m);
}

/* step_run with payload {cancel: true}: sets the step's cancel flag. A step
 * that already ended is left alone (its step_done or step_failed is on its way). */
static void on_step_cancel(agentd_t *d, const proto_msg_t *m) {
  int rc = jobq_cancel_step(&d->q, m);
  if (rc == 1)
    send_step_cancelled(d, m);
  log_info("workflow %lld step %lld (attempt %lld): cancel from the broker%s", (long long)m->workflow,
           (long long)m->step, (long long)m->attempt, rc >= 0 ? "" : " for a step not running here (ignored)");
}

/* Sends a held step result again (the link stamps a new id). */
static void send_again(proto_msg_t *m, void *arg) {
  send_msg(arg, m);
}

/* step_run: queued for a slot worker; takes over *mp. A repeat of a step that
 * is here already is not run again: its checkpoint, or its result, goes again. */
static void on_step_run(agentd_t *d, proto_msg_t **mp) {
  proto_msg_t *m = *mp;
  if (json_is_true(json_object_get(m->payload, "cancel"))) {
    on_step_cancel(d, m);
    return;
  }
  int here = jobq_repeat_step(&d->q, m, send_again, d);
  if (here) {
    log_warn("workflow %lld step %lld (attempt %lld) is already here (%s); not run again", (long long)m->workflow,
             (long long)m->step, (long long)m->attempt, here == 1 ? "running" : "finished");
    return;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return;
  j->kind = JOB_STEP;
  j->msg = m;
  *mp = NULL;
  jobq_add(&d->q, j);
}

static void on_checkpoint_ack(agentd_t *d, const proto_msg_t *m) {
  if (!jobq_ack_checkpoint(&d->q, m))
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
  jobq_add(&d->q, j);
}

/* One application message from the broker (the link handled the rest). */
static void on_broker(agentd_t *d, proto_msg_t *m) {
  switch (m->type) {
  case PROTO_TURN: on_turn(d, m); break;
  case PROTO_CANCEL: on_cancel(d, m); break;
  case PROTO_APPROVAL_REPLY: jobq_answer_approval(&d->q, m); break;
  case PROTO_STEP_RUN: on_step_run(d, &m); break;
  case PROTO_CHECKPOINT_ACK: on_checkpoint_ack(d, m); break;
  case PROTO_STEP_ACK: jobq_step_acked(&d->q, m); break;
  case PROTO_RESTORE: on_restore(d, &m); break;
  case PROTO_BYE: log_info("broker says bye (%s); will reconnect", m->detail ? m->detail : ""); break;
  case PROTO_ERROR: log_warn("broker error: %s: %s", m->code, m->detail); break;
  default: log_warn("ignored an unexpected %s from the broker", proto_type_name(m->type));
  }
  proto_msg_destroy(&m);
}

/* Forwards one encoded message from a worker to the broker; the link stamps its id. */
static void on_worker(agentd_t *d) {
  zmq_msg_t frame;
  zmq_msg_init(&frame);
  if (zmq_msg_recv(&frame, d->pull, ZMQ_DONTWAIT) >= 0) {
    int rc = proto_link_send_frame(d->link, zmq_msg_data(&frame), zmq_msg_size(&frame));
    if (rc < 0)
      log_warn("cannot forward a worker message to the broker: %s", strerror(-rc));
  }
  zmq_msg_close(&frame);
}

/* Registered with a broker (again): results and checkpoints the broker may not have go again. */
static void relinked(agentd_t *d, int ev) {
  jobq_relinked(&d->q, send_again, d);
  log_info("registered with broker %s as %s (epoch %s%s%s)", d->opts.broker, d->opts.name, proto_link_epoch(d->link),
           ev == PROTO_LINK_RECONNECTED ? "; again after: " : "",
           ev == PROTO_LINK_RECONNECTED ? proto_link_why(d->link) : "");
}

/* Serves the link (up to 256 messages, so that workers get their turn):
 * registration notices are logged, application messages handled. */
static int serve_link(agentd_t *d) {
  for (int i = 0; i < 256; i++) {
    proto_msg_t *m = NULL;
    int ev = proto_link_recv(d->link, 0, &m);
    if (ev == PROTO_LINK_MSG)
      on_broker(d, m);
    else if (ev == PROTO_LINK_REFUSED)
      log_error("the broker %s refused this node's key; add this line to its authorized_keys (the broker "
                "re-reads it by itself): %s node %s",
                d->opts.broker, proto_link_public_key(d->link), d->opts.name);
    else if (ev == PROTO_LINK_CONNECTED || ev == PROTO_LINK_RECONNECTED)
      relinked(d, ev);
    else
      return ev; /* nothing more now, or the socket failed */
  }
  return 0;
}

int agentd_run(agentd_t *d, volatile int *stop) {
  while (!*stop) {
    if (d->opts.drain && *d->opts.drain && !d->drain_started)
      start_drain(d);
    if (d->drain_started && drained(d))
      break;
    zmq_pollitem_t items[] = {{proto_link_socket(d->link), 0, ZMQ_POLLIN, 0}, {d->pull, 0, ZMQ_POLLIN, 0}};
    int due = proto_link_due_ms(d->link);
    if (d->drain_started && due > 100)
      due = 100; /* look at the running jobs often */
    if (zmq_poll(items, 2, due) < 0) {
      if (errno == EINTR)
        continue;
      log_error("poll failed: %s", zmq_strerror(errno));
      return -1;
    }
    for (int i = 0; i < 256 && (items[1].revents & ZMQ_POLLIN) && proto_readable(d->pull); i++)
      on_worker(d);
    int rc = serve_link(d);
    if (rc < 0) {
      log_error("the broker socket failed: %s", strerror(-rc));
      return -1;
    }
  }
  /* What the workers last handed over (a drained turn's end) goes out before the bye. */
  for (int i = 0; i < 4096 && proto_readable(d->pull); i++)
    on_worker(d);
  int linger = 2000;
  zmq_setsockopt(proto_link_socket(d->link), ZMQ_LINGER, &linger, sizeof linger);
  proto_link_bye(d->link);
  return 0;
}
