/* plan_editor: a plan opened as text in the user's editor ($VISUAL, $EDITOR, else vi).
 *
 * The console's [M]odify writes the plan as a [PLAN] block (the form agents
 * propose and the broker's parser reads), runs the editor on it, and sends
 * the saved text back with the modify verb's replace op; the broker parses
 * and validates it as the plan's new version.
 */
#ifndef CADRE_PLAN_EDITOR_H
#define CADRE_PLAN_EDITOR_H

#include <jansson.h>
#include <stddef.h>

#include "sbuf.h"

/* The most of an edited plan that is read back. */
#define PLAN_EDITOR_MAX (256 * 1024)

/* A plan (as the plan verb gives it) as an editable [PLAN] block, with a note above it. */
void plan_editor_text(sbuf_t *b, const json_t *plan);

/* Writes text to a temporary file, runs the editor on it with the terminal as it is, reads the
 * file back and removes it. 0 and *edited (caller frees) when the editor succeeded; a negative
 * errno-style code and err set when it could not run or failed. */
int plan_editor_run(const char *text, char **edited, char *err, size_t errlen);

#endif
