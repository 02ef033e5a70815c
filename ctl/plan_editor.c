/* plan_editor.c: a plan as text in $EDITOR (see plan_editor.h). */
#include "plan_editor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jx.h"

void plan_editor_text(sbuf_t *b, const json_t *p) {
  sbuf_printf(b,
              "Plan %lld: edit the block below and save; text outside it is ignored,\n"
              "leaving the file as it is keeps the plan unchanged.\n\n[PLAN]\n## Workflow: %s\n",
              (long long)jx_int(p, "id", 0), jx_str(p, "title", ""));
  size_t i;
  json_t *s;
  json_array_foreach(jx_arr(p, "steps"), i, s) {
    sbuf_printf(b, "\n### Step %lld: %s\n", (long long)jx_int(s, "number", 0), jx_str(s, "title", ""));
    if (jx_str(s, "agent", "")[0])
      sbuf_printf(b, "- Agent: %s\n", jx_str(s, "agent", ""));
    if (jx_str(s, "profile", "")[0]) /* the model the user moved the step to stays when the text comes back */
      sbuf_printf(b, "- Profile: %s\n", jx_str(s, "profile", ""));
    if (jx_str(s, "tool", "")[0])
      sbuf_printf(b, "- Tool: %s\n", jx_str(s, "tool", ""));
    const json_t *args = json_object_get(s, "arguments");
    char *dump = args && !json_is_null(args) ? json_dumps(args, JSON_COMPACT) : NULL;
    if (dump)
      sbuf_printf(b, "- Arguments: %s\n", dump);
    free(dump);
    sbuf_puts(b, "- Dependencies: ");
    size_t j;
    json_t *d;
    json_array_foreach(jx_arr(s, "dependencies"), j, d)
        sbuf_printf(b, "%sStep %lld", j ? ", " : "", (long long)json_integer_value(d));
    sbuf_puts(b, json_array_size(jx_arr(s, "dependencies")) ? "\n" : "none\n");
    sbuf_printf(b, "- Estimated Time: %.0fs\n", jx_num(s, "estimated_seconds", 30));
    const char *desc = jx_str(s, "description", "");
    if (desc[0])
      sbuf_printf(b, "- Description: %s\n", desc);
  }
  const json_t *est = jx_obj(p, "estimate");
  if (est)
    sbuf_printf(b, "\n## Total Estimated Time: %.0fs\n## Cost Estimate: $%.4f\n", jx_num(est, "seconds", 0),
                jx_num(est, "cost", 0));
  sbuf_puts(b, "[/PLAN]\n");
}

/* Runs the editor on path and waits for it: 0 when it exited with status 0. */
static int run_editor(const char *path, char *err, size_t errlen) {
  const char *editor = getenv("VISUAL");
  if (!editor || !editor[0])
    editor = getenv("EDITOR");
  if (!editor || !editor[0])
    editor = "vi";
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s \"$1\"", editor); /* the user's own setting, with its arguments */
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "cannot start the editor: %s", strerror(errno));
    return -errno;
  }
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, "sh", path, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      snprintf(err, errlen, "lost the editor: %s", strerror(errno));
      return -errno;
    }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    snprintf(err, errlen, "the editor (%s) did not finish cleanly (status %d)", editor,
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return -ECANCELED;
  }
  return 0;
}

int plan_editor_run(const char *text, char **edited, char *err, size_t errlen) {
  const char *tmp = getenv("TMPDIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/cadre-plan-XXXXXX.md", tmp && tmp[0] ? tmp : "/tmp");
  int fd = mkstemps(path, 3);
  if (fd < 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -errno;
  }
  size_t n = strlen(text);
  bool ok = write(fd, text, n) == (ssize_t)n;
  close(fd);
  int rc = ok ? run_editor(path, err, errlen) : -EIO;
  if (!ok)
    snprintf(err, errlen, "cannot write %s", path);
  FILE *f = rc == 0 ? fopen(path, "r") : NULL;
  if (rc == 0 && !f) {
    snprintf(err, errlen, "cannot read %s back: %s", path, strerror(errno));
    rc = -EIO;
  }
  if (f) {
    sbuf_t b = {0};
    char buf[8192];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0 && b.len < PLAN_EDITOR_MAX)
      sbuf_add(&b, buf, got);
    fclose(f);
    *edited = strdup(sbuf_str(&b));
    sbuf_free(&b);
  }
  unlink(path);
  return rc;
}
