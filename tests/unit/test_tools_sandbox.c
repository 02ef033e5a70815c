/* Unit tests of the node's own files (refused by the file tools even inside
 * the workspace), the scrubbing of secret values from results, and
 * execute_bash in the sandbox (agentd/sandbox.c): its bwrap command line,
 * its kills, its exit statuses and its network switch. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sandbox.h"
#include "test_tools.h"

#define ASSERT_HAS(text, s) assert_non_null(strstr((text), (s)))

/* Replaces the fixture's tools by tools with the given options (workspace set here). */
static void retool(fx_t *fx, tools_opts_t o) {
  char err[256];
  o.workspace = fx->ws;
  tools_destroy(&fx->t);
  fx->t = tools_new(&o, err, sizeof err);
  assert_non_null(fx->t);
}

/* ---- the node's own files ---------------------------------------------------------- */

static const struct {
  const char *name, *tool, *args;
  const char *want; /* part of the refusal; NULL: allowed */
} own_cases[] = {
    {"read the secrets file in the workspace", "read_file", "{\"path\": \"secrets.json\"}", "node's own files"},
    {"read it by its absolute path", "read_file", "{\"path\": \"@W/secrets.json\"}", "node's own files"},
    {"read it through a symlink", "read_file", "{\"path\": \"ln_secrets\"}", "node's own files"},
    {"read a file in the state directory", "read_file", "{\"path\": \"state/db\"}", "node's own files"},
    {"read it through a symlinked directory", "read_file", "{\"path\": \"ln_state/db\"}", "node's own files"},
    {"grep the secrets file", "grep", "{\"pattern\": \"KEY\", \"path\": \"secrets.json\"}", "node's own files"},
    {"grep the state directory", "grep", "{\"pattern\": \"KEY\", \"path\": \"state\"}", "node's own files"},
    {"list the state directory", "list_files", "{\"path\": \"state\"}", "node's own files"},
    {"overwrite the secrets file", "write_file_tool", "{\"path\": \"secrets.json\", \"content\": \"x\"}",
     "node's own files"},
    {"overwrite it through a symlink", "write_file_tool", "{\"path\": \"ln_secrets\", \"content\": \"x\"}",
     "node's own files"},
    {"create a file in the state directory", "write_file_tool", "{\"path\": \"state/new\", \"content\": \"x\"}",
     "node's own files"},
    {"create directories in it", "write_file_tool", "{\"path\": \"ln_state/a/b/new\", \"content\": \"x\"}",
     "node's own files"},
    {"edit the secrets file", "edit_file",
     "{\"path\": \"secrets.json\", \"old_string\": \"KEY\", \"new_string\": \"x\"}", "node's own files"},
    {"read an ordinary file", "read_file", "{\"path\": \"plain.txt\"}", NULL},
    {"a name that only starts like the state directory", "read_file", "{\"path\": \"state2/db\"}", NULL},
};

/* The own-file cases, with ws/secrets.json and ws/state hidden. */
void test_own_files_refused(void **state) {
  fx_t *fx = *state;
  char secrets[PATH_MAX], st[PATH_MAX], path[PATH_MAX];
  fx_put(fx, "secrets.json", "{\"openai_api_key\": \"KEY-VALUE-1234\"}\n", 37);
  fx_put(fx, "state/db", "KEY state\n", 10);
  fx_put(fx, "state2/db", "plain\n", 6);
  fx_put(fx, "plain.txt", "plain\n", 6);
  assert_int_equal(symlink("secrets.json", fx_path(fx, "ln_secrets", path, sizeof path)), 0);
  assert_int_equal(symlink("state", fx_path(fx, "ln_state", path, sizeof path)), 0);
  const char *hidden[] = {fx_path(fx, "secrets.json", secrets, sizeof secrets), fx_path(fx, "state", st, sizeof st),
                          "/nonexistent/is/skipped", fx->base /* holds the workspace: not hidden from the tools */,
                          NULL};
  retool(fx, (tools_opts_t){.hidden = hidden});
  for (size_t i = 0; i < sizeof own_cases / sizeof own_cases[0]; i++) {
    char args[1024];
    const char *at = strstr(own_cases[i].args, "@W");
    if (at)
      snprintf(args, sizeof args, "%.*s%s%s", (int)(at - own_cases[i].args), own_cases[i].args, fx->ws, at + 2);
    else
      snprintf(args, sizeof args, "%s", own_cases[i].args);
    tool_result_t r = fx_run(fx, own_cases[i].tool, args);
    if (own_cases[i].want) {
      if (!r.is_error || !strstr(r.text, own_cases[i].want))
        fail_msg("%s: expected a refusal with \"%s\", got: %s", own_cases[i].name, own_cases[i].want, r.text);
      assert_null(strstr(r.text, "KEY-VALUE"));
    } else if (r.is_error) {
      fail_msg("%s: refused: %s", own_cases[i].name, r.text);
    }
    tool_result_free(&r);
  }
  /* A walk leaves them out, and they were not changed. */
  tool_result_t r = fx_runp(fx, "list_files", "{}");
  assert_null(strstr(r.text, "secrets.json"));
  assert_null(strstr(r.text, "state/db"));
  ASSERT_HAS(r.text, "plain.txt");
  tool_result_free(&r);
  r = fx_runp(fx, "grep", "{s:s}", "pattern", "KEY");
  ASSERT_HAS(r.text, "no matches");
  tool_result_free(&r);
  char *got = fx_slurp(secrets, NULL);
  assert_string_equal(got, "{\"openai_api_key\": \"KEY-VALUE-1234\"}\n");
  free(got);
  struct stat sb;
  assert_int_not_equal(stat(fx_path(fx, "state/new", path, sizeof path), &sb), 0);
  assert_int_not_equal(stat(fx_path(fx, "state/a", path, sizeof path), &sb), 0);
}

/* ---- secrets in results --------------------------------------------------------------- */

void test_secrets_scrubbed(void **state) {
  fx_t *fx = *state;
  const char *secrets[] = {"sk-cadre-unit-0123456789", "short", NULL};
  setenv("CADRE_UNIT_API_KEY", "env-secret-abcdefgh", 1);
  retool(fx, (tools_opts_t){.secret_values = secrets});
  unsetenv("CADRE_UNIT_API_KEY");
  fx_put(fx, "leak.txt", "a sk-cadre-unit-0123456789 b env-secret-abcdefgh c short\n", 57);
  tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", "leak.txt");
  ASSERT_HAS(r.text, "a [secret removed] b [secret removed] c short");
  tool_result_free(&r);
  r = fx_runp(fx, "grep", "{s:s}", "pattern", "sk-cadre");
  assert_null(strstr(r.text, "0123456789"));
  tool_result_free(&r);
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "echo sk-cadre-unit-0123456789");
  assert_string_equal(r.text, "[secret removed]\n[exit 0]\n");
  tool_result_free(&r);
}

/* ---- the sandbox ---------------------------------------------------------------------------- */

/* A sandbox for the fixture's workspace, hiding hidden; NULL (test skipped) when it cannot be made. */
static const char *const *readable_paths; /* for make_sandbox; NULL: none */

static sandbox_t *make_sandbox(fx_t *fx, const char *const *hidden, const char *const *writable) {
  char err[512];
  sandbox_opts_t so = {
      .workspace = fx->ws, .hidden = hidden, .writable = writable, .readable = readable_paths, .procs = 32};
  sandbox_t *sb = sandbox_new(&so, err, sizeof err);
  if (!sb)
    print_message("sandbox not available here (%s): test skipped\n", err);
  return sb;
}

/* The index of arg in argv from start, -1 when absent. */
static int arg_at(char **argv, const char *arg, int start) {
  for (int i = start; argv[i]; i++)
    if (strcmp(argv[i], arg) == 0)
      return i;
  return -1;
}

void test_sandbox_argv(void **state) {
  fx_t *fx = *state;
  char in_ws[PATH_MAX], ws_dir[PATH_MAX], key[PATH_MAX];
  fx_put(fx, "cfg.json", "{}", 2);
  fx_put(fx, "private/x", "x", 1);
  snprintf(key, sizeof key, "%s/node.key", fx->outside);
  FILE *f = fopen(key, "w");
  fclose(f);
  const char *hidden[] = {fx_path(fx, "cfg.json", in_ws, sizeof in_ws),
                          fx_path(fx, "private", ws_dir, sizeof ws_dir),
                          key,
                          fx->base,
                          "/nonexistent",
                          NULL};
  const char *writable[] = {fx->outside, "/nonexistent-writable", NULL};
  /* --readable: the workspace's parent is refused (the workspace would be read-only under it); /etc/hostname
   * (a file) is bound read-only after the writable ones and before the masks */
  const char *readable[] = {fx->base, "/etc/hostname", "/nonexistent-readable", NULL};
  readable_paths = readable;
  sandbox_t *sb = make_sandbox(fx, hidden, writable);
  readable_paths = NULL;
  if (!sb)
    skip();
  char **argv = sandbox_argv(sb, "/bin/bash", "echo hi", false);
  int bind = arg_at(argv, "--bind", 0);
  assert_true(bind > 0);
  assert_string_equal(argv[bind + 1], fx->ws);
  const struct {
    const char *arg;
    bool present;
  } want[] = {{"--unshare-pid", true}, {"--die-with-parent", true}, {"--unshare-net", true}, {"--unshare-ipc", true},
              {"--cap-drop", true},    {"--new-session", true},     {"/nonexistent", false}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if ((arg_at(argv, want[i].arg, 0) >= 0) != want[i].present)
      fail_msg("%s should %sbe in the command line", want[i].arg, want[i].present ? "" : "not ");
  /* Masks inside the workspace come after its bind; an ancestor of it (base),
   * when it is not in /tmp, comes before; the key file is masked with /dev/null. */
  int out = arg_at(argv, fx->outside, 0); /* --writable: bound read-write after the workspace */
  assert_true(out > bind + 2);
  assert_string_equal(argv[out - 1], "--bind");
  assert_string_equal(argv[out + 1], fx->outside);
  assert_int_equal(arg_at(argv, "/nonexistent-writable", 0), -1);
  assert_int_equal(arg_at(argv, "/nonexistent-readable", 0), -1);
  int host = arg_at(argv, "/etc/hostname", 0);
  assert_true(host > out);
  assert_string_equal(argv[host - 1], "--ro-bind");
  assert_true(arg_at(argv, in_ws, 0) > host); /* the masks come after it */
  for (int i = 0; argv[i]; i++)
    if (strcmp(argv[i], "--ro-bind") == 0 && strcmp(argv[i + 1], fx->base) == 0)
      fail_msg("the workspace's parent %s was bound read-only", fx->base);
  int cfg = arg_at(argv, in_ws, 0), priv = arg_at(argv, ws_dir, 0);
  assert_true(cfg > bind && priv > bind);
  assert_string_equal(argv[cfg - 1], "/dev/null");
  assert_string_equal(argv[priv - 1], "--tmpfs");
  bool in_tmp = strncmp(fx->base, "/tmp/", 5) == 0;
  int base = arg_at(argv, fx->base, 0);
  assert_true(in_tmp ? base < 0 || base == bind + 1 : base < bind);
  int dash = arg_at(argv, "--", 0);
  assert_string_equal(argv[dash + 1], "/bin/bash");
  assert_string_equal(argv[dash + 3], "echo hi");
  sandbox_argv_free(argv);
  argv = sandbox_argv(sb, "/bin/bash", "x", true);
  assert_int_equal(arg_at(argv, "--unshare-net", 0), -1);
  sandbox_argv_free(argv);
  sandbox_destroy(&sb);
  sandbox_destroy(&sb);
}

/* A TCP listener on 127.0.0.1 (its port in *port); the fd. */
static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t n = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

void test_sandboxed_exec(void **state) {
  fx_t *fx = *state;
  char key[PATH_MAX];
  snprintf(key, sizeof key, "%s/node.key", fx->ws);
  FILE *f = fopen(key, "w");
  fputs("secret-key = \"x\"\n", f);
  fclose(f);
  const char *hidden[] = {key, NULL}, *writable[] = {fx->outside, NULL};
  sandbox_t *sb = make_sandbox(fx, hidden, writable);
  if (!sb)
    skip();
  retool(fx, (tools_opts_t){.sandbox = sb, .hidden = hidden});
  assert_true(tools_sandboxed(fx->t));
  int port, lfd = listen_loopback(&port);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "exec 3<>/dev/tcp/127.0.0.1/%d && echo CONNECTED", port);
  const struct {
    const char *name, *command;
    bool network;
    const char *want; /* in the result */
  } cases[] = {
      {"runs in the workspace", "pwd; echo x > made.txt; echo ok", false, "ok\n[exit 0]"},
      {"a signal is reported as one", "kill -SEGV $$", false, "[killed by signal 11 (SIGSEGV)]"},
      {"an exit status stays one", "exit 3", false, "[exit 3]"},
      {"the node's file is masked", "cat node.key; echo rc=$?", false, "rc=1"},
      {"no network by default", cmd, false, "[exit 1]"},
      {"network when the role allows it", cmd, true, "CONNECTED\n[exit 0]"},
      {"the root is read-only", "touch /usr/cadre-unit-x", false, "Read-only file system"},
      {"... but for --writable directories", "echo w > ../outside/w.txt && cat ../outside/w.txt", false, "w\n[exit 0]"},
      {"limits are in force", "ulimit -v; ulimit -f", false, "4194304\n1048576\n[exit 0]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *args = json_pack("{s:s, s:i}", "command", cases[i].command, "timeout", 20);
    char *text = json_dumps(args, JSON_COMPACT);
    tools_call_opts_t co = {.network = cases[i].network};
    tool_result_t r;
    tools_run_with(fx->t, "execute_bash", text, &co, NULL, &r);
    if (!strstr(r.text, cases[i].want))
      fail_msg("%s: expected \"%s\" in: %s", cases[i].name, cases[i].want, r.text);
    assert_null(strstr(r.text, "secret-key"));
    tool_result_free(&r);
    free(text);
    json_decref(args);
  }
  close(lfd);
  tools_destroy(&fx->t);
  sandbox_destroy(&sb);
  retool(fx, (tools_opts_t){0});
}

/* A node whose sandbox cannot be made refuses commands, saying why. */
void test_commands_refused(void **state) {
  fx_t *fx = *state;
  char err[256];
  sandbox_opts_t so = {.workspace = fx->ws, .bwrap = "/nonexistent/bwrap"};
  assert_null(sandbox_new(&so, err, sizeof err));
  ASSERT_HAS(err, "bubblewrap (bwrap) is not installed");
  retool(fx, (tools_opts_t){.no_commands = err});
  assert_false(tools_sandboxed(fx->t));
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command", "echo x > ran.txt");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "this node does not run commands: bubblewrap (bwrap) is not installed");
  tool_result_free(&r);
  char path[PATH_MAX];
  assert_int_not_equal(access(fx_path(fx, "ran.txt", path, sizeof path), F_OK), 0);
}
