/* tools_internal: the tools' limits and entry points, for tools.c and the
 * files that implement them (not for users of tools.h). What they share is
 * in tools_util.h. */
#ifndef CADRE_TOOLS_INTERNAL_H
#define CADRE_TOOLS_INTERNAL_H

#include "tools_util.h"

#define TOOLS_READ_LIMIT 2000      /* read_file lines by default */
#define TOOLS_LINE_MAX 2000        /* read_file: longer lines are cut */
#define TOOLS_GREP_LINE_MAX 300    /* grep: longer matching lines are cut */
#define TOOLS_GREP_MAX 500         /* grep: matches shown */
#define TOOLS_LIST_MAX 1000        /* list_files: entries shown */
#define TOOLS_EDIT_MAX (64u << 20) /* edit_file: largest file */

/* The tools (tools_exec.c, tools_fs.c, tools_search.c): see tools.h for their arguments. */
void tools_execute_bash(tools_t *t, const targs_t *a, const tools_call_opts_t *opts, atomic_bool *cancel,
                        tool_result_t *out);
/* The secret values to keep out of commands and results: a copy of given
 * plus the values of the environment's variables that commands never see
 * (tools_exec.c). NULL-terminated; NULL on ENOMEM. */
char **tools_exec_secrets(const tools_t *t, const char *const *given);
void tools_read_file(tools_t *t, const targs_t *a, tool_result_t *out);
void tools_write_file(tools_t *t, const targs_t *a, tool_result_t *out);
void tools_edit_file(tools_t *t, const targs_t *a, tool_result_t *out);
void tools_list_files(tools_t *t, const targs_t *a, tool_result_t *out);
void tools_grep(tools_t *t, const targs_t *a, tool_result_t *out);
/* The lines of old_s that new_s replaces (-) and their replacement (+), after
 * "@@ line N" (the first that differs); common first and last lines left out;
 * at most max_lines marked lines (tools_preview.c). */
void tools_preview_diff(sbuf_t *b, const char *old_s, const char *new_s, size_t max_lines);

#endif
