/* summary: finds and parses a sub-agent's [SUMMARY]...[/SUMMARY] block.
 *
 *   [SUMMARY]
 *   Status: PASS/FAIL
 *   Key Points:
 *   - Point 1
 *   - Point 2
 *   Recommendation: Action to take
 *   [/SUMMARY]
 *
 * Tolerant of small format slips models make: case of tags and labels,
 * markdown decoration (**Status:**, ### Key Points), bullets as -, *, •, or
 * "1." / "1)", a missing [/SUMMARY] at the end of the text, extra blank lines,
 * the block inside a ``` fence, Status words like Success/Passed/OK/Done (PASS)
 * or Failed/Error/Blocked (FAIL) and PARTIAL, and a recommendation spread over
 * several lines. The last block in the text wins.
 */
#ifndef CADRE_SUMMARY_H
#define CADRE_SUMMARY_H

#include <jansson.h>
#include <stdbool.h>

/* Parses the last summary block in text. Returns a new JSON object
 *   {"status": "PASS"|"FAIL"|"PARTIAL"|..., "key_points": [str...], "recommendation": str,
 *    "raw": the block's text without the tags}
 * or NULL when the text holds no summary block. Caller owns. */
json_t *summary_parse(const char *text);

/* A summary made by the broker when an agent gave none or failed:
 * status FAIL, one key point with the reason. Caller owns. */
json_t *summary_failed(const char *reason);

/* The text that goes into the main agent's history for a summary from agent
 * id (role): a labelled block in the seed's format. Caller frees. */
char *summary_render(const char *id, const char *role, const json_t *summary);

#endif
