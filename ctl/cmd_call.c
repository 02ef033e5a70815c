/* cmd_call.c: commands that are no fixed verb: cadre call VERB [JSON], cadre keygen FILE. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jx.h"

#include "commands.h"
#include "keys.h"

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

/* Opens url with xdg-open, detached, when a display is there; never fails the command. */
static void open_url(const char *url) {
  const char *x = getenv("DISPLAY"), *w = getenv("WAYLAND_DISPLAY");
  if ((!x || !x[0]) && (!w || !w[0]))
    return;
  pid_t pid = fork();
  if (pid == 0) {
    if (fork() == 0) { /* a grandchild: nobody has to wait for the browser */
      int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
      }
      execlp("xdg-open", "xdg-open", url, (char *)NULL);
    }
    _exit(0);
  }
  if (pid > 0)
    waitpid(pid, NULL, 0);
}

int cmd_dashboard(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    ctl_error(ctl, "usage: cadre dashboard");
    return 2;
  }
  json_t *r = ctl_once(ctl, "dashboard", NULL);
  if (!r)
    return 1;
  const char *url = jx_str(r, "url", NULL);
  int rc = 0;
  if (ctl->json) {
    ctl_print_json(r);
  } else if (!url) {
    fprintf(stderr, "cadre: the broker serves no dashboard: start it with --http 127.0.0.1:PORT\n");
    rc = 1;
  } else {
    printf("%s\n", url);
    fflush(stdout);
    open_url(url);
  }
  json_decref(r);
  return rc;
}

/* A name in the broker's authorized_keys: 1 to 63 of letters, digits, . _ @ -. */
static bool key_name_ok(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n < 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") == n;
}

int cmd_keygen(ctl_t *ctl, int argc, char **argv) {
  static const struct option longopts[] = {
      {"role", required_argument, 0, 'r'}, {"name", required_argument, 0, 'n'}, {0, 0, 0, 0}};
  const char *role = NULL, *name = NULL, *usage = "usage: cadre keygen FILE [--role node|controller --name NAME]";
  optind = 0; /* 0, not 1: GNU getopt starts afresh (main's parse stopped at the command) */
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': role = optarg; break;
    case 'n': name = optarg; break;
    default: ctl_error(ctl, "%s", usage); return 2;
    }
  }
  if (optind + 1 != argc) {
    ctl_error(ctl, "%s", usage);
    return 2;
  }
  const char *file = argv[optind];
  if (role && strcmp(role, "node") != 0 && strcmp(role, "controller") != 0) {
    ctl_error(ctl, "keygen: --role is node or controller, not \"%s\"", role);
    return 2;
  }
  if ((role && !name) || (name && !role) || (name && !key_name_ok(name))) {
    ctl_error(ctl, "keygen: --role and --name go together; NAME is 1 to 63 letters, digits, '.', '_', '@' or '-'");
    return 2;
  }
  if (access(file, F_OK) == 0) {
    ctl_error(ctl, "%s exists; not overwriting it", file);
    return 1;
  }
  keys_pair_t kp;
  if (keys_generate(&kp) < 0 || keys_save_pair(file, &kp) < 0) {
    ctl_error(ctl, "cannot write %s", file);
    return 1;
  }
  char line[160];
  snprintf(line, sizeof line, "%s%s%s%s%s", kp.public_key, role ? " " : "", role ? role : "", name ? " " : "",
           name ? name : "");
  if (ctl->json) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "file", file, "public_key", kp.public_key, "line", line,
                          "role", role, "name", name);
    ctl_print_json(o);
    json_decref(o);
  } else {
    printf("%s\n# add this line to the broker's authorized_keys (then it lets the key in as %s;\n"
           "# the broker reads the file again by itself, or at once on SIGHUP)\n",
           line, role ? role : "a node or a controller");
  }
  keys_wipe(&kp);
  return 0;
}
