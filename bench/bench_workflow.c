/* cadre-bench-workflow: the workflow engine's time per step on a large DAG of
 * no-op tool steps, without nodes or sockets (bench/run drives it).
 *
 *   cadre-bench-workflow --steps N --shape chain|fan [--seconds S] [--slots K] [--memory] [--group G]
 *
 * The engine runs as in the broker, on a real store (SQLite in a temp dir): a
 * plan of N tool steps (chain: step i waits for step i-1; fan: every step
 * after the first waits for step 1) is proposed, approved and run on one node
 * of K slots (default 64) whose step_done is delivered at once for every
 * step_run the engine sends. As in tests/unit/test_workflow.c, the outbox is
 * a stand-in (broker_send records the step_run, broker_event drops the event),
 * and so are agents_spawn_held / agents_admit / agents_stop (no agent steps here). Plans from
 * models are capped at PLAN_MAX_STEPS steps; this one is made here and its
 * "too many steps" verdict is lifted, to measure the engine alone. Stops after
 * S seconds (default 60) and reports over the steps done by then.
 *
 * Engine time per step is the process's CPU time (user + system) from the
 * approval to the last step_done handled, over the steps done: the engine,
 * its SQLite writes (the WAL's write calls included) and the JSON it builds;
 * no node, socket or model (the machine's other load does not count, as it
 * would in wall time, which is reported too). The approval's and the end's
 * whole-document writes are in it, spread over the steps. --memory runs on an
 * in-memory store (no durability: the engine's own cost); commit_us is what
 * one durable one-row commit costs on the same kind of store, the floor of a
 * step that must be on disk before its step_run and its step_ack go out.
 * --group G hands the engine up to G results waiting at once inside one batch
 * (wf_batch_begin/end: one commit), as a broker that read them in one wake of
 * its loop could (it does not yet: each node message is its own batch); a
 * chain never has more than one waiting.
 * steady_cpu_us_per_step leaves out the approval and the last step_done (which
 * ends the workflow: its report, the whole document and the workflow_finished
 * event, each as large as the plan), given as approve_ms and finish_ms.
 * Prints {"shape","steps","done","seconds","us_per_step","cpu_us_per_step",
 * "steady_cpu_us_per_step","approve_ms","finish_ms","commit_us","finished",
 * "propose_seconds"}. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "workflow.h"
#include "workflow_int.h"

typedef struct {
  int64_t workflow, step, attempt;
} sent_t;

static sent_t *queue;
static size_t n_queue, cap_queue;

int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg) {
  (void)b, (void)p;
  if (msg->type == PROTO_STEP_RUN) {
    if (n_queue == cap_queue && !(queue = realloc(queue, (cap_queue = cap_queue * 2 + 1024) * sizeof *queue)))
      return -ENOMEM;
    queue[n_queue++] = (sent_t){msg->workflow, msg->step, msg->attempt};
  }
  return 0;
}

void broker_event(broker_t *b, const char *kind, const char *session, int64_t turn, json_t *payload) {
  (void)b, (void)kind, (void)session, (void)turn;
  json_decref(payload);
}

void broker_events_hold(broker_t *b) {
  (void)b;
}

void broker_events_release(broker_t *b) {
  (void)b;
}

int agents_spawn_held(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                      const char *call_id, char *id, size_t idlen, char *err, size_t errlen) {
  (void)b, (void)role_or_profile, (void)by_profile, (void)task, (void)parent, (void)call_id, (void)id, (void)idlen;
  snprintf(err, errlen, "no agent steps in this benchmark");
  return -1;
}

void agents_admit(broker_t *b) {
  (void)b;
}

void agents_resume(broker_t *b, const char *id) {
  (void)b, (void)id;
}

int agents_stop(broker_t *b, const char *id, char *err, size_t errlen) {
  (void)b, (void)id, (void)err, (void)errlen;
  return 0;
}

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void) {
  return clock_s(CLOCK_MONOTONIC);
}

static double cpu_s(void) {
  return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* CPU time of one durable commit of one small row (the store's settings), in µs: the median of 9 runs of 200. */
static double commit_us(const char *dir) {
  char err[256], path[300];
  snprintf(path, sizeof path, "%s/commit", dir);
  if (mkdir(path, 0700) < 0)
    return 0;
  store_t *st = store_open(path, err, sizeof err);
  double runs[9];
  json_t *state = json_pack("{s:s, s:i}", "status", "done", "attempts", 1);
  for (int r = 0; st && r < 9; r++) {
    double t = cpu_s();
    for (int i = 0; i < 200; i++)
      store_workflow_step_put(st, 1, r * 200 + i, state);
    runs[r] = (cpu_s() - t) * 1e6 / 200;
  }
  json_decref(state);
  store_close(&st);
  for (int i = 1; i < 9; i++) /* insertion sort */
    for (int j = i; j > 0 && runs[j] < runs[j - 1]; j--) {
      double x = runs[j];
      runs[j] = runs[j - 1], runs[j - 1] = x;
    }
  return runs[4];
}

static json_t *make_plan(long n, bool chain) {
  json_t *steps = json_array();
  for (long i = 1; i <= n; i++) {
    json_t *deps = json_array();
    if (i > 1)
      json_array_append_new(deps, json_integer(chain ? i - 1 : 1));
    json_array_append_new(steps, json_pack("{s:I, s:s, s:s, s:s, s:{s:s}, s:o}", "number", (json_int_t)i, "title",
                                           "no-op", "agent", "tester", "tool", "read_file_tool", "arguments", "path",
                                           "a.txt", "dependencies", deps));
  }
  return json_pack("{s:s, s:o}", "title", "bench", "steps", steps);
}

int main(int argc, char **argv) {
  long n = 10000, slots = 64, group = 1;
  double budget = 60;
  bool chain = true, memory = false;
  static const struct option lo[] = {{"steps", 1, 0, 'n'}, {"shape", 1, 0, 's'},  {"seconds", 1, 0, 't'},
                                     {"slots", 1, 0, 'k'}, {"memory", 0, 0, 'm'}, {"group", 1, 0, 'g'},
                                     {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'n': n = atol(optarg); break;
    case 's': chain = strcmp(optarg, "fan") != 0; break;
    case 't': budget = atof(optarg); break;
    case 'k': slots = atol(optarg); break;
    case 'm': memory = true; break;
    case 'g': group = atol(optarg); break;
    default: return 2;
    }
  }
  log_setup("cadre-bench-workflow", false, LOG_ERROR);
  char dir[] = "/tmp/cadre-bench-wf-XXXXXX", err[256];
  if (!mkdtemp(dir))
    return 1;
  broker_t b;
  memset(&b, 0, sizeof b);
  b.store = store_open(memory ? STORE_MEMORY : dir, err, sizeof err);
  cadre_config_t *config = config_load(NULL, NULL, err, sizeof err);
  if (!b.store || !config) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  b.opts.config = config;
  peer_t node;
  memset(&node, 0, sizeof node);
  node.role = PEER_NODE;
  node.name = strdup("node-a");
  node.workspace = strdup("/tmp/ws");
  node.slots = (int)slots;
  b.peers = &node;

  double t_plan = now_s();
  workflow_t *wf = propose(&b, "main", make_plan(n, chain), "bench");
  if (!wf) {
    fprintf(stderr, "the plan was not taken\n");
    return 1;
  }
  t_plan = now_s() - t_plan;
  wf->status = WF_PENDING; /* lifts the cap on a model's plans (see above) */
  double t0 = now_s(), c0 = cpu_s();
  if (workflow_approve(&b, wf->id, NULL, err, sizeof err) < 0) {
    fprintf(stderr, "approve: %s\n", err);
    return 1;
  }
  double c_approved = cpu_s(), c_last = 0;
  long done = 0;
  size_t head = 0;
  while (head < n_queue && now_s() - t0 < budget) {
    size_t end = n_queue; /* the results waiting now (what they set off waits for the next round) */
    if (group > 1)
      wf_batch_begin(&b);
    for (long g = 0; g < group && head < end; g++) {
      sent_t s = queue[head++];
      if (done == n - 1)
        c_last = cpu_s(); /* the last step_done ends the workflow too */
      proto_msg_t *m = wf_step_msg(PROTO_STEP_DONE, s.workflow, s.step, s.attempt);
      proto_set_str(m, PROTO_F_text, "ok");
      workflow_on_node_msg(&b, &node, m);
      proto_msg_destroy(&m);
      done++;
    }
    if (group > 1)
      wf_batch_end(&b);
  }
  double secs = now_s() - t0, c_end = cpu_s(), cpu = c_end - c0;
  if (!c_last)
    c_last = c_end;
  printf("{\"shape\": \"%s\", \"steps\": %ld, \"done\": %ld, \"seconds\": %.3f, \"us_per_step\": %.2f, "
         "\"cpu_us_per_step\": %.2f, \"steady_cpu_us_per_step\": %.2f, \"approve_ms\": %.2f, \"finish_ms\": %.2f, "
         "\"commit_us\": %.2f, \"finished\": %s, \"propose_seconds\": %.3f}\n",
         chain ? "chain" : "fan", n, done, secs, done ? secs * 1e6 / (double)done : 0.0,
         done ? cpu * 1e6 / (double)done : 0.0, done > 1 ? (c_last - c_approved) * 1e6 / (double)(done - 1) : 0.0,
         (c_approved - c0) * 1e3, (c_end - c_last) * 1e3, commit_us(dir), wf->status == WF_DONE ? "true" : "false",
         t_plan);
  workflow_stop(&b);
  store_close(&b.store);
  config_destroy(&config);
  free(node.name), free(node.workspace), free(queue);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : 1;
}
