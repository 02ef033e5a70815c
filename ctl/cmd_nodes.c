/* cmd_nodes.c: cadre nodes, cadre history, cadre sessions. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"


static void join_list(const json_t *list, char *buf, size_t len) {
  size_t i, n = 0;
  json_t *v;
  buf[0] = '\0';
  json_array_foreach(list, i, v) n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", i ? "," : "",
                                                       json_string_value(v) ? json_string_value(v) : "?");
}

int cmd_nodes(ctl_t *ctl, int argc, char **argv) {
  (void)argc;
  (void)argv;
  json_t *nodes = ctl_once(ctl, "nodes", NULL);
  if (!nodes)
    return 1;
  if (ctl->json) {
    ctl_print_json(nodes);
  } else if (json_array_size(nodes) == 0) {
    printf("no agent daemons are registered\n");
  } else {
    printf("%-20s %-16s %5s %4s  %-24s %s\n", "NAME", "HOST", "SLOTS", "BUSY", "MODELS", "WORKSPACE");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
      char models[256];
      join_list(json_object_get(n, "models"), models, sizeof models);
      printf("%-20s %-16s %5lld %4lld  %-24s %s\n", json_string_value(json_object_get(n, "name")),
             json_string_value(json_object_get(n, "host")), (long long)json_integer_value(json_object_get(n, "slots")),
             (long long)json_integer_value(json_object_get(n, "busy")), models,
             json_string_value(json_object_get(n, "workspace")));
    }
  }
  json_decref(nodes);
  return 0;
}

int cmd_history(ctl_t *ctl, int argc, char **argv) {
  const char *session = argc > 1 ? argv[1] : "main";
  json_t *h = ctl_once(ctl, "history", json_pack("{s:s}", "session", session));
  if (!h)
    return 1;
  if (ctl->json) {
    ctl_print_json(h);
  } else {
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(h, "messages"), i, m) {
      const char *role = json_string_value(json_object_get(m, "role"));
      const char *content = json_string_value(json_object_get(m, "content"));
      printf("%s%s:%s %s\n", ctl->color ? "\033[1m" : "", role ? role : "?", ctl->color ? "\033[0m" : "",
             content ? content : "");
    }
  }
  json_decref(h);
  return 0;
}

int cmd_sessions(ctl_t *ctl, int argc, char **argv) {
  (void)argc;
  (void)argv;
  json_t *s = ctl_once(ctl, "sessions", NULL);
  if (!s)
    return 1;
  if (ctl->json) {
    ctl_print_json(s);
  } else {
    printf("%-16s %-12s %-18s %8s %10s %10s %9s\n", "ID", "ROLE", "PROFILE", "MESSAGES", "TOKENS IN", "TOKENS OUT",
           "COST");
    size_t i;
    json_t *o;
    json_array_foreach(s, i, o) {
      json_t *u = json_object_get(o, "usage");
      printf("%-16s %-12s %-18s %8lld %10lld %10lld %9.4f\n", json_string_value(json_object_get(o, "id")),
             json_string_value(json_object_get(o, "role")), json_string_value(json_object_get(o, "profile")),
             (long long)json_integer_value(json_object_get(o, "messages")),
             (long long)json_integer_value(json_object_get(u, "prompt_tokens")),
             (long long)json_integer_value(json_object_get(u, "completion_tokens")),
             json_number_value(json_object_get(u, "cost")));
    }
  }
  json_decref(s);
  return 0;
}

int cmd_call(ctl_t *ctl, int argc, char **argv) {
  if (argc < 2) {
    ctl_error(ctl, "usage: cadre call VERB [ARGS-JSON]");
    return 2;
  }
  json_error_t jerr;
  json_t *args = argc > 2 ? json_loads(argv[2], 0, &jerr) : NULL;
  if (argc > 2 && !json_is_object(args)) {
    ctl_error(ctl, "call: ARGS must be a JSON object (%s)", args ? "not an object" : jerr.text);
    json_decref(args);
    return 2;
  }
  json_t *r = ctl_once(ctl, argv[1], args);
  if (!r)
    return 1;
  ctl_print_json(r);
  json_decref(r);
  return 0;
}
