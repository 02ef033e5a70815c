/* output: the multiplexed display of several agents' streams.
 *
 * Every agent's text is buffered per agent and printed a whole line at a
 * time, each line prefixed with the agent's role emoji and id in the role's
 * colour, so two agents' text never shares a line. One agent (the main agent
 * in streaming mode) may be "live": its unfinished line is shown as it grows,
 * in a region just above the prompt that is redrawn on every flush. When a
 * prompt is on screen (the console), a flush erases the live region and the
 * prompt, prints the new lines, and draws both again, so what the user is
 * typing survives output arriving.
 */
#ifndef CADRE_OUTPUT_H
#define CADRE_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

typedef struct out out_t;

/* The prompt a flush must keep intact. */
typedef struct {
  /* Terminal rows between the prompt's first row and the cursor. */
  int (*rows_above)(void *ud);
  /* Draws the prompt and the typed text, the cursor at column 0 of an empty row. */
  void (*redraw)(void *ud);
  void *ud;
} out_prompt_t;

/* Line styles for out_agent_line. */
typedef enum { OUT_PLAIN = 0, OUT_DIM, OUT_BOLD, OUT_ERROR, OUT_GOOD, OUT_WARN } out_style_t;

/* A display on f; color: ANSI colours; term: f is a terminal (live region allowed). */
out_t *out_new(FILE *f, bool color, bool term);
void out_free(out_t **self_p);

/* Sets the prompt hooks (NULL: none). */
void out_set_prompt(out_t *o, const out_prompt_t *p);
/* Whether the prompt is on screen now (a flush erases and redraws it only then). */
void out_prompt_visible(out_t *o, bool visible);
/* The agent whose unfinished line is shown live (NULL: none). */
void out_set_live(out_t *o, const char *id);
/* Records an agent's role (for its emoji and colour). */
void out_agent(out_t *o, const char *id, const char *role);

/* Appends streamed text of agent id; thinking text is shown dimmed. */
void out_delta(out_t *o, const char *id, bool thinking, const char *text);
/* Ends agent id's unfinished line (end of a turn, or its attempt restarts). */
void out_end_line(out_t *o, const char *id);
/* Drops agent id's unfinished line without printing it. */
void out_drop_line(out_t *o, const char *id);
/* A message about agent id: each line of text gets the agent's prefix. */
void out_agent_line(out_t *o, const char *id, out_style_t style, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The console's own text (no prefix); may hold several lines. */
void out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, text given whole. */
void out_puts(out_t *o, const char *text);
/* Writes what is pending to the screen, keeping the prompt. */
void out_flush(out_t *o);
/* Erases the live region and the prompt (before the program leaves or the
 * terminal is handed to someone else); they come back at the next flush. */
void out_clear_bottom(out_t *o);
/* Forgets what the screen shows below the scrollback: after the user ended a
 * line (the edited line stays where it is). */
void out_forget_bottom(out_t *o);

/* The colour escape of a role ("" without colours), and its emoji. */
const char *out_role_color(const out_t *o, const char *role);
const char *out_role_emoji(const char *role);
/* The escape that starts a line style ("" without colours). */
const char *out_style_start(bool color, out_style_t style);
/* Whether colours are on. */
bool out_color(const out_t *o);
/* Display width of UTF-8 text on a terminal, skipping ANSI escapes. */
int out_width(const char *s, size_t len);
/* Terminal columns (80 when unknown). */
int out_columns(const out_t *o);

#endif
