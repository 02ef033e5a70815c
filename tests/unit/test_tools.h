/* Shared fixture of the tools tests (test_tools.c, test_tools_paths.c, test_tools_exec.c). */
#ifndef CADRE_TEST_TOOLS_H
#define CADRE_TEST_TOOLS_H

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools.h"

typedef struct {
  char base[256];    /* real path of a fresh temporary directory (short, so paths fit PATH_MAX) */
  char ws[300];      /* base/ws: the workspace */
  char evil[300];    /* base/ws-evil: a sibling with a shared prefix */
  char outside[300]; /* base/outside: sentinels */
  tools_t *t;
} fx_t;

/* cmocka setup / teardown: a fresh workspace and tools for each test. */
int fx_setup(void **state);
int fx_teardown(void **state);

/* Runs tool with JSON arguments; checks that the result is sane (text is
 * valid UTF-8 for JSON, summary set). Caller frees with tool_result_free. */
tool_result_t fx_run(fx_t *fx, const char *tool, const char *args);
/* As fx_run, the arguments from a jansson pack format. */
tool_result_t fx_runp(fx_t *fx, const char *tool, const char *fmt, ...);
/* Writes content (len bytes) to ws/rel, making parent directories. */
void fx_put(fx_t *fx, const char *rel, const char *content, size_t len);
/* The content of an absolute path (NULL when missing); caller frees. */
char *fx_slurp(const char *path, size_t *len);
/* ws/rel into buf. */
const char *fx_path(fx_t *fx, const char *rel, char *buf, size_t len);
/* Milliseconds of the monotonic clock. */
int64_t fx_now_ms(void);
/* Waits (polling, with a deadline) until pred(arg) holds. */
bool fx_wait_until(bool (*pred)(void *), void *arg, int timeout_ms);

/* The tests in the other files. */
void test_escape_corpus(void **state);
void test_escape_corpus_fallback(void **state);
void test_absolute_inside(void **state);
void test_symlinks_inside(void **state);
void test_hard_link(void **state);
void test_fallback_walk_basics(void **state);

void test_exec_basic(void **state);
void test_exec_cwd_stdin_fds(void **state);
void test_exec_env_scrub(void **state);
void test_exec_rlimits(void **state);
void test_exec_timeout_kills_all(void **state);
void test_exec_background_after_exit(void **state);
void test_exec_cancel(void **state);
void test_exec_output_cap(void **state);
void test_exec_default_timeout(void **state);
void test_exec_concurrent(void **state);
void test_exec_bad_args(void **state);
void test_exec_signal_and_binary(void **state);

void test_own_files_refused(void **state);
void test_secrets_scrubbed(void **state);
void test_sandbox_argv(void **state);
void test_sandboxed_exec(void **state);
void test_commands_refused(void **state);

#endif
