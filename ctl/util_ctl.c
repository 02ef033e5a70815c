/* util_ctl.c: connecting, requests and output shared by the subcommands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

void ctl_print_json(const json_t *v) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
  if (s) {
    fputs(s, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
  free(s);
}

void ctl_error(const ctl_t *ctl, const char *fmt, ...) {
  char text[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (ctl->json) {
    json_t *o = json_pack("{s:s}", "error", text);
    ctl_print_json(o);
    json_decref(o);
  }
  fprintf(stderr, "cadre: %s\n", text);
}

client_t *ctl_connect(ctl_t *ctl) {
  if (!ctl->broker) {
    if (cluster_up(ctl, 0, NULL, true) != 0) {
      ctl_error(ctl, "could not start the local cluster (state %s)", ctl->state_dir);
      return NULL;
    }
    cluster_use(ctl);
  } else if (!ctl->key_file || !ctl->broker_key) {
    cluster_use(ctl); /* keys of the local state dir unless given */
  }
  char err[1024];
  client_opts_t o = {ctl->broker, ctl->key_file, ctl->broker_key, NULL, ctl->workspace[0] ? ctl->workspace : NULL};
  client_t *c = client_connect(&o, ctl->timeout_ms, err, sizeof err);
  if (!c)
    ctl_error(ctl, "%s", err);
  return c;
}

const char *ctl_error_text(const char *err) {
  const char *colon = err ? strstr(err, ": ") : NULL;
  if (!colon || colon == err || (size_t)(colon - err) >= 64)
    return err;
  char code[64];
  snprintf(code, sizeof code, "%.*s", (int)(colon - err), err);
  bool http = strncmp(code, "http_", 5) == 0 && code[5] && strspn(code + 5, "0123456789") == strlen(code + 5);
  return http || proto_error_doc_of(code) ? colon + 2 : err;
}

json_t *ctl_request(ctl_t *ctl, client_t *c, const char *verb, json_t *args) {
  char err[1024];
  json_t *r = client_request(c, verb, args, ctl->timeout_ms, err, sizeof err);
  if (!r)
    ctl_error(ctl, "%s", ctl->json ? err : ctl_error_text(err));
  return r;
}

json_t *ctl_once(ctl_t *ctl, const char *verb, json_t *args) {
  client_t *c = ctl_connect(ctl);
  if (!c) {
    json_decref(args);
    return NULL;
  }
  json_t *r = ctl_request(ctl, c, verb, args);
  client_destroy(&c);
  return r;
}
