/* tools: setup, definitions and dispatch (see tools.h).
 * The tools themselves: tools_exec.c (execute_bash), tools_fs.c (read_file,
 * write_file_tool, edit_file), tools_search.c (list_files, grep); what they
 * share (argument readers, results, file locks): tools_util.c; paths:
 * workspace.c. */
#include "tools_internal.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- definitions -------------------------------------------------------------- */

typedef struct {
  const char *name;
  bool mutates;
  const char *description;
  const char *params; /* JSON schema of the parameters */
} tool_def_t;

static const tool_def_t TOOL_DEFS[] = {
    {"execute_bash", true,
     "Run a shell command with bash in the workspace directory (the current directory) and return its "
     "output. stdout and stderr are merged; very long output keeps its beginning and its end. The result "
     "ends with the exit status, e.g. [exit 0]. There is no terminal and no stdin, so use non-interactive "
     "flags. The command and everything it started are killed after `timeout` seconds, and background "
     "processes do not outlive the command. To look at files prefer read_file, list_files and grep.",
     "{\"type\":\"object\",\"properties\":{"
     "\"command\":{\"type\":\"string\",\"description\":\"The command line, e.g. \\\"make test 2>&1 | tail -n "
     "50\\\".\"},"
     "\"timeout\":{\"type\":\"integer\",\"description\":\"Seconds before the command is killed (default 120 "
     "unless the node is configured otherwise; at most 3600).\"}},"
     "\"required\":[\"command\"]}"},
    {"read_file", false,
     "Read a text file of the workspace. Returns numbered lines: the line number, a tab, then the line. "
     "Long files: read in pieces with offset and limit. Paths are relative to the workspace root.",
     "{\"type\":\"object\",\"properties\":{"
     "\"path\":{\"type\":\"string\",\"description\":\"The file, relative to the workspace, e.g. \\\"src/main.c\\\".\"},"
     "\"offset\":{\"type\":\"integer\",\"description\":\"First line to return, counting from 1 (default 1).\"},"
     "\"limit\":{\"type\":\"integer\",\"description\":\"How many lines to return at most (default 2000).\"}},"
     "\"required\":[\"path\"]}"},
    {"write_file_tool", true,
     "Create a file, or replace the whole content of one, atomically. Missing parent directories are "
     "created. To change part of an existing file use edit_file instead.",
     "{\"type\":\"object\",\"properties\":{"
     "\"path\":{\"type\":\"string\",\"description\":\"The file, relative to the workspace.\"},"
     "\"content\":{\"type\":\"string\",\"description\":\"The complete new content of the file.\"}},"
     "\"required\":[\"path\",\"content\"]}"},
    {"edit_file", true,
     "Replace an exact piece of text in an existing file. old_string must appear in the file exactly as "
     "given, whitespace and indentation included, and only once unless replace_all is true: include a few "
     "surrounding lines to make it unique. Read the file first. Do not include the line numbers that "
     "read_file shows.",
     "{\"type\":\"object\",\"properties\":{"
     "\"path\":{\"type\":\"string\",\"description\":\"The file, relative to the workspace.\"},"
     "\"old_string\":{\"type\":\"string\",\"description\":\"The exact text to replace.\"},"
     "\"new_string\":{\"type\":\"string\",\"description\":\"The text to put in its place.\"},"
     "\"replace_all\":{\"type\":\"boolean\",\"description\":\"Replace every occurrence (default false).\"}},"
     "\"required\":[\"path\",\"old_string\",\"new_string\"]}"},
    {"list_files", false,
     "List the files of the workspace whose paths match a glob, sorted. '*' matches within one directory, "
     "'**' across any number of directories, '{a,b}' either: \"**/*.c\" (all C files), \"src/**\", "
     "\"*.{c,h}\" (top level only). Directories are searched, not listed; .git is skipped.",
     "{\"type\":\"object\",\"properties\":{"
     "\"glob\":{\"type\":\"string\",\"description\":\"Pattern relative to path (default \\\"**\\\": everything).\"},"
     "\"path\":{\"type\":\"string\",\"description\":\"Directory to search from (default the workspace root).\"}},"
     "\"required\":[]}"},
    {"grep", false,
     "Search file contents with a POSIX extended regular expression (as grep -E). Returns one line per "
     "match: path:line: text. Searches a file, or a directory recursively; binary files and .git are skipped.",
     "{\"type\":\"object\",\"properties\":{"
     "\"pattern\":{\"type\":\"string\",\"description\":\"Extended regular expression, e.g. \\\"TODO|FIXME\\\" or "
     "\\\"^static int [a-z_]+\\\".\"},"
     "\"path\":{\"type\":\"string\",\"description\":\"File or directory to search (default the workspace root).\"},"
     "\"glob\":{\"type\":\"string\",\"description\":\"Only files matching this glob: \\\"*.c\\\" matches names at any "
     "depth, a glob with '/' matches paths relative to path.\"},"
     "\"ignore_case\":{\"type\":\"boolean\",\"description\":\"Match case-insensitively (default false).\"}},"
     "\"required\":[\"pattern\"]}"},
};

#define N_TOOLS (sizeof TOOL_DEFS / sizeof TOOL_DEFS[0])

static const tool_def_t *find_def(const char *name) {
  for (size_t i = 0; name && i < N_TOOLS; i++)
    if (strcmp(TOOL_DEFS[i].name, name) == 0)
      return &TOOL_DEFS[i];
  return NULL;
}

/* {"type":"function","function":{...}} for one tool. */
static json_t *definition(const tool_def_t *d) {
  json_t *params = json_loads(d->params, 0, NULL);
  if (!params)
    return NULL;
  return json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function", "function", "name", d->name, "description",
                   d->description, "parameters", params);
}

// OpenAI tool definitions for the named tools (NULL: all).
json_t *tools_definitions(const char *const *names) {
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < N_TOOLS; i++) {
    bool want = !names;
    for (size_t j = 0; names && names[j] && !want; j++)
      want = strcmp(names[j], TOOL_DEFS[i].name) == 0;
    if (want)
      json_array_append_new(arr, definition(&TOOL_DEFS[i]));
  }
  return arr;
}

// Short definitions for a small context: each description cut to its first
// sentence, and no descriptions of parameters (their names and types stay).
void tools_compact(json_t *defs) {
  size_t i;
  json_t *d;
  json_array_foreach(defs, i, d) {
    json_t *fn = json_object_get(d, "function");
    const char *desc = json_string_value(json_object_get(fn, "description"));
    const char *end = desc ? strstr(desc, ". ") : NULL;
    const char *nl = desc ? strstr(desc, ".\n") : NULL;
    if (nl && (!end || nl < end))
      end = nl;
    if (end)
      json_object_set_new(fn, "description", json_stringn(desc, (size_t)(end - desc) + 1));
    const char *k;
    json_t *prop;
    json_object_foreach(json_object_get(json_object_get(fn, "parameters"), "properties"), k, prop)
        json_object_del(prop, "description");
  }
}

// True when name is one of the tools.
bool tools_known(const char *name) {
  return find_def(name) != NULL;
}

// True when the tool changes files or runs commands.
bool tools_mutates(const char *name) {
  const tool_def_t *d = find_def(name);
  return d && d->mutates;
}

/* ---- setup and dispatch ------------------------------------------------------------ */

/* A NULL-terminated deep copy of list (NULL stays an empty list). */
static char **copy_list(const char *const *list) {
  size_t n = 0;
  while (list && list[n])
    n++;
  char **copy = calloc(n + 1, sizeof *copy);
  for (size_t i = 0; copy && i < n; i++)
    copy[i] = strdup(list[i]);
  return copy;
}

// Opens the workspace.
tools_t *tools_new(const tools_opts_t *opts, char *err, size_t errlen) {
  tools_t *t = calloc(1, sizeof *t);
  if (!t || !opts) {
    snprintf(err, errlen, "%s", t ? "no tool options given" : "out of memory");
    free(t);
    return NULL;
  }
  if (ws_init(&t->ws, opts->workspace, err, errlen) != 0) {
    free(t);
    return NULL;
  }
  t->default_timeout_s = opts->default_timeout_s > 0 ? opts->default_timeout_s : TOOLS_DEFAULT_TIMEOUT_S;
  if (t->default_timeout_s > TOOLS_MAX_TIMEOUT_S)
    t->default_timeout_s = TOOLS_MAX_TIMEOUT_S;
  t->output_cap = opts->output_cap ? opts->output_cap : TOOLS_OUTPUT_CAP;
  if (t->output_cap < 256)
    t->output_cap = 256;
  for (size_t i = 0; i < TOOLS_LOCK_STRIPES; i++)
    pthread_mutex_init(&t->locks[i], NULL);
  atomic_init(&t->run_seq, 0);
  t->scrub_env = copy_list(opts->scrub_env);
  t->secret_values = tools_exec_secrets(t, opts->secret_values);
  t->sandbox = opts->sandbox;
  t->no_commands = opts->no_commands ? strdup(opts->no_commands) : NULL;
  if (!t->scrub_env || !t->secret_values || (opts->no_commands && !t->no_commands) ||
      tools_hidden_init(t, opts->hidden) < 0) {
    snprintf(err, errlen, "out of memory");
    tools_destroy(&t);
    return NULL;
  }
  return t;
}

// Closes the workspace and frees; sets *self_p to NULL.
void tools_destroy(tools_t **self_p) {
  tools_t *t = self_p ? *self_p : NULL;
  if (!t)
    return;
  ws_fini(&t->ws);
  util_strv_free(t->scrub_env, false);
  util_strv_free(t->secret_values, true);
  free(t->no_commands);
  tools_hidden_free(t);
  for (size_t i = 0; i < TOOLS_LOCK_STRIPES; i++)
    pthread_mutex_destroy(&t->locks[i]);
  free(t);
  *self_p = NULL;
}

// True when paths are confined with openat2 (false: the fallback walk).
bool tools_uses_openat2(const tools_t *self) {
  return self && self->ws.openat2;
}

// Test hook: force the fallback walk (on) or go back to openat2 when the kernel has it.
void tools_test_force_fallback(tools_t *self, bool on) {
  if (!self)
    return;
  if (on) {
    self->ws.openat2 = false;
    return;
  }
  ws_t probe;
  char err[256];
  if (ws_init(&probe, self->ws.root_real, err, sizeof err) == 0) {
    self->ws.openat2 = probe.openat2;
    ws_fini(&probe);
  }
}

// True when commands run in the sandbox.
bool tools_sandboxed(const tools_t *self) {
  return self && self->sandbox && !self->no_commands;
}

// Runs one call with the default call options.
void tools_run(tools_t *self, const char *name, const char *arguments, atomic_bool *cancel, tool_result_t *out) {
  tools_run_with(self, name, arguments, NULL, cancel, out);
}

// Runs one call.
void tools_run_with(tools_t *self, const char *name, const char *arguments, const tools_call_opts_t *opts,
                    atomic_bool *cancel, tool_result_t *out) {
  static const tools_call_opts_t defaults = {0};
  memset(out, 0, sizeof *out);
  out->exit_code = name && strcmp(name, "execute_bash") == 0 ? -1 : 0;
  const tool_def_t *d = find_def(name);
  if (!self || !d) {
    char shown[200];
    ws_shown(name ? name : "", name ? strlen(name) : 0, shown, sizeof shown);
    tr_error(out,
             self ? "unknown tool \"%s\"; the tools are execute_bash, read_file, write_file_tool, "
                    "edit_file, list_files and grep"
                  : "tools are not set up (tool \"%s\")",
             shown);
    return;
  }
  json_t *args = targs_parse(arguments, d->name, out);
  if (!args)
    return;
  targs_t a = {args, d->name};
  if (strcmp(d->name, "execute_bash") == 0)
    tools_execute_bash(self, &a, opts ? opts : &defaults, cancel, out);
  else if (strcmp(d->name, "read_file") == 0)
    tools_read_file(self, &a, out);
  else if (strcmp(d->name, "write_file_tool") == 0)
    tools_write_file(self, &a, out);
  else if (strcmp(d->name, "edit_file") == 0)
    tools_edit_file(self, &a, out);
  else if (strcmp(d->name, "list_files") == 0)
    tools_list_files(self, &a, out);
  else
    tools_grep(self, &a, out);
  json_decref(args);
  if (!out->text)
    tr_error(out, "%s produced no result", d->name);
  tools_scrub_secrets(self, out);
}

// The cap on a result's text.
size_t tools_output_cap(const tools_t *self) {
  return self ? self->output_cap : TOOLS_OUTPUT_CAP;
}

// Replaces every secret value in out's text and summary.
void tools_scrub_result(const tools_t *self, tool_result_t *out) {
  tools_scrub_secrets(self, out);
}

// Frees a result's text.
void tool_result_free(tool_result_t *r) {
  if (!r)
    return;
  free(r->text);
  r->text = NULL;
}
