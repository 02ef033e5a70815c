/* multiline: the pieces of several-line input that do not need a terminal.
 *
 * The console's line editor (console_edit.c) edits one line at a time; what
 * was entered before it in the same message (Alt-Enter, a line ending in `\`,
 * a pasted block) waits in a block shown above the prompt. These functions
 * clean a pasted block, tell a continued line, and draw a block within a
 * given number of rows.
 */
#ifndef CADRE_MULTILINE_H
#define CADRE_MULTILINE_H

#include <stdbool.h>
#include <stddef.h>

#include "sbuf.h"

/* The bytes a terminal sends around a bracketed paste (ESC[?2004h turns it on). */
#define ML_PASTE_START "\033[200~"
#define ML_PASTE_END "\033[201~"
/* The most a pasted block may hold; the rest is dropped (and said so). */
#define ML_PASTE_MAX (1024 * 1024)
/* A paste with no line break and no longer than this goes into the edited line itself. */
#define ML_INLINE_MAX 400

/* Appends n bytes of pasted text to out as a message's text: line breaks
 * (CR LF, CR, LF) become LF, tabs stay, other control characters and bytes
 * that are not UTF-8 are dropped. */
void ml_clean_paste(sbuf_t *out, const char *in, size_t n);

/* Whether an entered line asks for another one: it ends in a single `\`
 * (not `\\`). */
bool ml_continues(const char *line);

/* Draws text (which may hold several lines) into out for a screen cols wide,
 * each line as one row: the first after first_prefix, the others after
 * cont_prefix, each cut with "…" to fit. More than max_rows lines show the
 * first ones, a "… N more lines …" row and the last one. Rows drawn go to
 * *rows; every row ends in "\n" when end_rows, else all but the last. */
void ml_preview(sbuf_t *out, const char *text, int cols, int max_rows, const char *first_prefix,
                const char *cont_prefix, bool end_rows, int *rows);

#endif
