/* cmd_plans.c: workflow plans from the command line:
 * cadre plans | plan ID | approve ID [--wait] | reject ID | modify ID OP ... |
 * cancel [ID] [--no-rollback] | pause ID | resume ID |
 * template save ID NAME | template list | template run NAME [key=value ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"
#include "view.h"

static const char *mark(const char *status) {
  return view_step_mark(status);
}

/* One plan in the seed's style, with each step's progress mark. */
void ctl_print_plan(const json_t *p) {
  const json_t *est = json_object_get(p, "estimate");
  printf("Plan %lld: %s [%s]\n", (long long)json_integer_value(json_object_get(p, "id")),
         json_string_value(json_object_get(p, "title")) ?: "(untitled)",
         json_string_value(json_object_get(p, "status")) ?: "?");
  if (est)
    printf("  estimate: %.0f s (critical path), $%.4f\n", json_number_value(json_object_get(est, "seconds")),
           json_number_value(json_object_get(est, "cost")));
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(p, "steps"), i, s) {
    const char *tool = json_string_value(json_object_get(s, "tool"));
    printf("  %s %lld. %s (%s%s%s", mark(json_string_value(json_object_get(s, "status"))),
           (long long)json_integer_value(json_object_get(s, "number")), json_string_value(json_object_get(s, "title")) ?: "",
           json_string_value(json_object_get(s, "agent")) ?: "?", tool ? ", " : "", tool ? tool : "");
    size_t j;
    json_t *d;
    json_array_foreach(json_object_get(s, "dependencies"), j, d) printf("%s%lld", j ? "," : "; after ", (long long)json_integer_value(d));
    long long attempts = json_integer_value(json_object_get(s, "attempts"));
    printf(")%s", attempts > 1 ? "" : "\n");
    if (attempts > 1)
      printf(" [%lld attempts]\n", attempts);
  }
  json_array_foreach(json_object_get(p, "errors"), i, s) printf("  ! %s\n", json_string_value(json_object_get(s, "message")));
  const json_t *rb = json_object_get(json_object_get(p, "report"), "rollback");
  if (rb)
    printf("  rolled back: %zu file(s) restored, %zu mismatch(es)\n", json_array_size(json_object_get(rb, "restored")),
           json_array_size(json_object_get(rb, "mismatches")));
}

static json_t *call(ctl_t *ctl, client_t *c, const char *verb, json_t *args) {
  return ctl_request(ctl, c, verb, args);
}

static int output(ctl_t *ctl, json_t *r, bool plan) {
  if (!r)
    return 1;
  if (ctl->json)
    ctl_print_json(r);
  else if (plan)
    ctl_print_plan(r);
  else
    printf("%s %lld: %s\n", json_string_value(json_object_get(r, "status")) ? "plan" : "ok",
           (long long)json_integer_value(json_object_get(r, "id")), json_string_value(json_object_get(r, "status")) ?: "");
  json_decref(r);
  return 0;
}

static bool parse_id(ctl_t *ctl, const char *s, json_int_t *id) {
  char *end;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || *end || v <= 0) {
    ctl_error(ctl, "expected a plan id (a positive number), got \"%s\"", s ? s : "");
    return false;
  }
  *id = v;
  return true;
}

/* Waits for the workflow to finish and prints it; exit 0 only when done. */
static int wait_finished(ctl_t *ctl, client_t *c, json_int_t id) {
  json_decref(call(ctl, c, "subscribe", NULL));
  for (;;) {
    proto_msg_t *m = NULL;
    client_next_t r = client_next(c, 1000, &m);
    if (r == CLIENT_ERROR)
      return 1;
    if (r == CLIENT_RECONNECTED)
      json_decref(call(ctl, c, "subscribe", NULL));
    if (r != CLIENT_MSG)
      continue;
    const json_t *p = m->payload;
    bool ours = m->type == PROTO_EVENT && json_integer_value(json_object_get(p, "id")) == id;
    if (ours && !ctl->json && strncmp(m->kind, "step_", 5) == 0)
      printf("%s step %lld %s\n", strcmp(m->kind, "step_done") == 0 ? "✓" : strcmp(m->kind, "step_failed") == 0 ? "✗" : "⟳",
             (long long)json_integer_value(json_object_get(p, "step")), m->kind + 5);
    if (ours && strcmp(m->kind, "workflow_finished") == 0) {
      const char *status = json_string_value(json_object_get(p, "status"));
      int rc = status && strcmp(status, "done") == 0 ? 0 : 1;
      output(ctl, json_deep_copy(p), true);
      proto_msg_destroy(&m);
      return rc;
    }
    proto_msg_destroy(&m);
  }
}

/* An edit for the modify verb from words: OP STEP [VALUE] | add_step JSON | --edit JSON
 * (argv[0] is OP). NULL when the words make no edit. Shared with the console's /modify. */
json_t *ctl_plan_edit(int argc, char **argv) {
  json_t *edit = NULL;
  if (argc >= 2 && strcmp(argv[0], "--edit") == 0) {
    edit = json_loads(argv[1], 0, NULL);
  } else if (argc >= 2 && strcmp(argv[0], "add_step") == 0) {
    edit = json_pack("{s:s, s:o}", "op", "add_step", "step", json_loads(argv[1], 0, NULL) ?: json_null());
  } else if (argc >= 2) {
    const char *op = argv[0];
    char *end;
    long long step = strtoll(argv[1], &end, 10);
    if (*end || step <= 0)
      return NULL;
    edit = json_pack("{s:s, s:I}", "op", op, "step", (json_int_t)step);
    const char *v = argc >= 3 ? argv[2] : NULL;
    if (strcmp(op, "set_agent") == 0 && v)
      json_object_set_new(edit, "agent", json_string(v));
    else if (strcmp(op, "set_tool") == 0)
      json_object_set_new(edit, "tool", v && strcmp(v, "none") ? json_string(v) : json_null());
    else if (strcmp(op, "set_title") == 0 && v)
      json_object_set_new(edit, "title", json_string(v));
    else if (strcmp(op, "set_estimate") == 0 && v)
      json_object_set_new(edit, "seconds", json_real(atof(v)));
    else if (strcmp(op, "set_arguments") == 0 && v)
      json_object_set_new(edit, "arguments", json_loads(v, 0, NULL) ?: json_null());
    else if (strcmp(op, "set_dependencies") == 0) {
      json_t *deps = json_array();
      char *copy = strdup(v ? v : ""), *save = NULL;
      for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        if (strcmp(t, "none"))
          json_array_append_new(deps, json_integer(atoll(t)));
      free(copy);
      json_object_set_new(edit, "dependencies", deps);
    }
  }
  if (!json_is_object(edit)) {
    json_decref(edit);
    return NULL;
  }
  return edit;
}

static int edit_from_words(ctl_t *ctl, int argc, char **argv, json_t **edit) {
  /* modify ID OP STEP [VALUE]  |  modify ID --edit JSON */
  *edit = ctl_plan_edit(argc - 2, argv + 2);
  if (!*edit) {
    ctl_error(ctl, "usage: cadre modify ID (set_agent|set_tool|set_title|set_estimate|set_arguments|"
                   "set_dependencies|remove_step) STEP [VALUE] | cadre modify ID add_step JSON | "
                   "cadre modify ID --edit JSON");
    return 2;
  }
  return 0;
}

static int template_cmd(ctl_t *ctl, client_t *c, int argc, char **argv) {
  const char *sub = argc > 1 ? argv[1] : "";
  json_int_t id;
  if (strcmp(sub, "list") == 0)
    return output(ctl, call(ctl, c, "template_list", NULL), false) == 0 ? 0 : 1;
  if (strcmp(sub, "save") == 0 && argc >= 4 && parse_id(ctl, argv[2], &id))
    return output(ctl, call(ctl, c, "template_save", json_pack("{s:I, s:s}", "id", id, "name", argv[3])), false);
  if (strcmp(sub, "run") == 0 && argc >= 3) {
    json_t *values = json_object();
    for (int i = 3; i < argc; i++) {
      char *eq = strchr(argv[i], '=');
      if (!eq) {
        ctl_error(ctl, "template values are key=value, got \"%s\"", argv[i]);
        json_decref(values);
        return 2;
      }
      *eq = '\0';
      json_object_set_new(values, argv[i], json_string(eq + 1));
    }
    return output(ctl, call(ctl, c, "template_run", json_pack("{s:s, s:o}", "name", argv[2], "values", values)), true);
  }
  ctl_error(ctl, "usage: cadre template save ID NAME | cadre template list | cadre template run NAME [key=value ...]");
  return 2;
}

int cmd_plans(ctl_t *ctl, int argc, char **argv) {
  const char *cmd = argv[0];
  client_t *c = ctl_connect(ctl);
  if (!c)
    return 1;
  int rc = 2;
  json_int_t id = 0;
  if (strcmp(cmd, "plans") == 0) {
    json_t *r = call(ctl, c, "plans", NULL);
    rc = r ? 0 : 1;
    if (r && ctl->json)
      ctl_print_json(r);
    else if (r && json_array_size(r) == 0)
      printf("no plans\n");
    size_t i;
    json_t *p;
    if (r && !ctl->json)
      json_array_foreach(r, i, p) ctl_print_plan(p);
    json_decref(r);
  } else if (strcmp(cmd, "template") == 0) {
    rc = template_cmd(ctl, c, argc, argv);
  } else if (strcmp(cmd, "cancel") == 0) {
    json_t *args = json_object();
    for (int i = 1; i < argc; i++) {
      if (strcmp(argv[i], "--no-rollback") == 0)
        json_object_set_new(args, "rollback", json_false());
      else if (parse_id(ctl, argv[i], &id))
        json_object_set_new(args, "id", json_integer(id));
    }
    rc = output(ctl, call(ctl, c, "cancel_workflow", args), false);
  } else if (argc < 2 || !parse_id(ctl, argv[1], &id)) {
    ctl_error(ctl, "usage: cadre %s ID", cmd);
  } else if (strcmp(cmd, "plan") == 0) {
    json_t *r = call(ctl, c, "plan", json_pack("{s:I}", "id", id));
    if (r && !ctl->json && json_string_value(json_object_get(r, "text")))
      fputs(json_string_value(json_object_get(r, "text")), stdout);
    rc = output(ctl, r, true);
  } else if (strcmp(cmd, "approve") == 0) {
    bool wait = argc > 2 && strcmp(argv[2], "--wait") == 0;
    json_t *r = call(ctl, c, "approve", json_pack("{s:I}", "id", id));
    rc = r ? 0 : 1;
    if (r && wait)
      rc = wait_finished(ctl, c, id);
    else if (r)
      rc = output(ctl, json_incref(r), true);
    json_decref(r);
  } else if (strcmp(cmd, "modify") == 0) {
    json_t *edit = NULL;
    rc = edit_from_words(ctl, argc, argv, &edit);
    if (rc == 0)
      rc = output(ctl, call(ctl, c, "modify", json_pack("{s:I, s:o}", "id", id, "edit", edit)), true);
  } else {
    const char *verb = strcmp(cmd, "reject") == 0 ? "reject" : strcmp(cmd, "pause") == 0 ? "pause" : "resume";
    rc = output(ctl, call(ctl, c, verb, json_pack("{s:I}", "id", id)), false);
  }
  client_destroy(&c);
  return rc;
}
