/* jx: typed reads of JSON objects, the one set of getters for all programs.
 *
 * Each getter reads obj[key] and returns it when it has the asked type, else
 * the default. obj may be NULL or not an object. Returned pointers borrow from
 * obj (valid while obj lives and is not changed). */
#ifndef CADRE_JX_H
#define CADRE_JX_H

#include <jansson.h>
#include <stdbool.h>

/* obj[key] as a string, or dflt. */
const char *jx_str(const json_t *obj, const char *key, const char *dflt);
/* obj[key] as an integer (a whole real number counts), or dflt. */
json_int_t jx_int(const json_t *obj, const char *key, json_int_t dflt);
/* obj[key] as a number (integer or real), or dflt. */
double jx_num(const json_t *obj, const char *key, double dflt);
/* obj[key] as a boolean, or dflt. */
bool jx_bool(const json_t *obj, const char *key, bool dflt);
/* obj[key] when it is an object, else NULL. */
json_t *jx_obj(const json_t *obj, const char *key);
/* obj[key] when it is an array, else NULL. */
json_t *jx_arr(const json_t *obj, const char *key);
/* True when obj[key] is a non-empty string. */
bool jx_has_str(const json_t *obj, const char *key);

#endif
