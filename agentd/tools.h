/* tools: the coding tools an agent daemon runs for the model, confined to its workspace.
 *
 * Tools (OpenAI function-calling names; the seed's names first):
 *   execute_bash     {command, timeout?}            run a shell command in the workspace
 *   read_file        {path, offset?, limit?}         numbered lines
 *   write_file_tool  {path, content}                 create or replace a file (atomic)
 *   edit_file        {path, old_string, new_string, replace_all?}
 *   list_files       {glob?, path?}                  files under the workspace matching a glob
 *   grep             {pattern, path?, glob?}         regex search, "path:line: text"
 *
 * Every path resolves beneath the workspace: absolute paths, "..", symlinks
 * pointing out, and sibling-prefix tricks (/ws vs /ws-evil) are refused with
 * a clear error, for files that exist and for files that do not exist yet.
 * Failures come back as the tool's result text (is_error set), never a crash.
 */
#ifndef CADRE_TOOLS_H
#define CADRE_TOOLS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TOOLS_OUTPUT_CAP (32 * 1024) /* result text: head and tail kept beyond this */
#define TOOLS_DEFAULT_TIMEOUT_S 120  /* execute_bash, unless the call or the config says otherwise */
#define TOOLS_MAX_TIMEOUT_S 3600

typedef struct tools tools_t;
struct sandbox;

typedef struct {
  const char *workspace; /* directory; must exist */
  int default_timeout_s; /* execute_bash default (0: TOOLS_DEFAULT_TIMEOUT_S) */
  size_t output_cap;     /* 0: TOOLS_OUTPUT_CAP */
  /* Names of environment variables never passed to commands (besides the
   * built-in list: *_API_KEY, *_TOKEN, *_SECRET, CADRE_KEY, ...). May be NULL. */
  const char *const *scrub_env;
  /* Secret values (API keys, the node's CURVE secret key) that must not
   * appear in a command's environment under any name, and are replaced by
   * "[secret removed]" in every tool result (values of 8 bytes or more; the
   * environment's values of the scrubbed names count too). May be NULL;
   * NULL-terminated. */
  const char *const *secret_values;
  /* The sandbox commands run in (borrowed; sandbox.h). NULL: commands run
   * unconfined (tests, and cadre-agentd --no-sandbox). */
  struct sandbox *sandbox;
  /* Non-NULL: execute_bash runs nothing and answers with this reason (the
   * sandbox could not be made and --no-sandbox was not given). */
  const char *no_commands;
  /* The node's own files and directories (secrets, keys, config, state): the
   * file tools refuse them, and what lies in them, even inside the
   * workspace. NULL-terminated; missing ones are skipped. May be NULL. */
  const char *const *hidden;
} tools_opts_t;

/* Opens the workspace (keeps a directory fd). NULL with err on failure. */
tools_t *tools_new(const tools_opts_t *opts, char *err, size_t errlen);
void tools_destroy(tools_t **self_p);
/* True when paths are confined with openat2(RESOLVE_BENEATH); false: the
 * fallback walk (kernel without openat2, or a seccomp filter refusing it). */
bool tools_uses_openat2(const tools_t *self);
/* Test hook: on forces the fallback walk; off goes back to openat2 where the
 * kernel has it. Call before any tools_run, not during one. */
void tools_test_force_fallback(tools_t *self, bool on);

/* OpenAI tool definitions (array of {"type":"function","function":{name,
 * description, parameters}}) for the named tools; NULL names: all. Caller owns. */
json_t *tools_definitions(const char *const *names);

/* Shortens definitions in place for a small context: each description cut to
 * its first sentence, none for parameters. */
void tools_compact(json_t *defs);
/* True when name is one of the tools above. */
bool tools_known(const char *name);
/* True when the tool changes files or runs commands (for approval and read-only roles). */
bool tools_mutates(const char *name);

typedef struct {
  char *text; /* result for the model (capped; never NULL) */
  bool is_error;
  int exit_code; /* execute_bash: the command's exit status (-1 when killed/not run) */
  bool timed_out;
  char summary[160]; /* one short line for the user: "exit 0, 12 lines", "wrote 340 bytes", ... */
} tool_result_t;

/* Runs one call. arguments is the JSON text the model sent (or an object
 * serialised). cancel (may be NULL) aborts a running command within ~100 ms
 * (the whole process group is killed). Thread-safe: several slot workers may
 * call it at once; writes to the same file are serialised, never interleaved. */
void tools_run(tools_t *self, const char *name, const char *arguments, atomic_bool *cancel, tool_result_t *out);

/* What a call may do besides its arguments (from the agent's role, never from the model). */
typedef struct {
  bool network; /* execute_bash keeps the host's network (the role's tool policy says "network": true) */
} tools_call_opts_t;

/* tools_run with call options (NULL: the defaults, no network). */
void tools_run_with(tools_t *self, const char *name, const char *arguments, const tools_call_opts_t *opts,
                    atomic_bool *cancel, tool_result_t *out);
/* True when commands run in the sandbox; false: unconfined or refused. */
bool tools_sandboxed(const tools_t *self);
void tool_result_free(tool_result_t *r);

/* The cap on a result's text (tools_opts_t.output_cap). */
size_t tools_output_cap(const tools_t *self);
/* Replaces every secret value the node knows in out's text and summary. */
void tools_scrub_result(const tools_t *self, tool_result_t *out);

/* A long-lived program (an MCP server) started as execute_bash starts its
 * commands: in the sandbox (network as asked), with the same environment
 * without secrets (env, NULL-terminated "NAME=value", added after that
 * filter), limits but no CPU-time cap, in the workspace; with pipes to its
 * stdin (in_fd, blocking), stdout and stderr (out_fd, err_fd, non-blocking). */
typedef struct {
  pid_t pid; /* -1 once reaped */
  int in_fd, out_fd, err_fd;
  int exit_status; /* waitpid's, once reaped */
  unsigned long long start;
  char marker[96];
  char *cgroup_dir;
} tools_child_t;

/* 0, or -1 with err (no commands on this node, fork failed, ...). */
int tools_child_start(tools_t *self, const char *command, const char *const *env, bool network, tools_child_t *c,
                      char *err, size_t errlen);
/* True while the child runs; reaps it once it has exited. */
bool tools_child_alive(tools_child_t *c);
/* SIGTERM, a grace period, SIGKILL: the child and all it started; closes the pipes. */
void tools_child_stop(tools_t *self, tools_child_t *c);

/* What a call that changes things would do, for the user asked to allow it:
 * execute_bash "$ command"; edit_file the old lines (-) and the new (+);
 * write_file_tool a new file's lines (+) or a diff against the current content.
 * At most max_lines marked lines, then "... N more lines". NULL for other tools
 * or arguments that are not JSON. Caller frees. */
char *tools_preview(tools_t *self, const char *name, const char *arguments, size_t max_lines);

#endif
