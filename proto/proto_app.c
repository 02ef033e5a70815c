/* proto_app.c: the application layer as data — verb arguments, event
 * payloads and error codes from proto/messages.def, and the checks they
 * drive. */
#include <errno.h>
#include <string.h>

#include "proto.h"
#include "proto_internal.h"

#define PROTO_ERR_DEF(name, doc) const char PROTO_ERR_##name[] = #name;
PROTO_ERRORS(PROTO_ERR_DEF)
#undef PROTO_ERR_DEF

static const struct {
  const char *name;
  const char *doc;
} errors[] = {
#define ERROR_ROW(name, doc) {#name, doc},
    PROTO_ERRORS(ERROR_ROW)
#undef ERROR_ROW
};

#define REQUIRED_REQ true
#define REQUIRED_OPT false

static const proto_key_t arg_rows[] = {
#define ARG_ROW(verb, name, KIND, R, doc) {#verb, #name, PROTO_KIND_##KIND, REQUIRED_##R, doc},
    PROTO_ARGS(ARG_ROW)
#undef ARG_ROW
};

static const proto_key_t event_rows[] = {
#define EVENT_ROW(kind, name, KIND, R, doc) {#kind, #name, PROTO_KIND_##KIND, REQUIRED_##R, doc},
    PROTO_EVENT_FIELDS(EVENT_ROW)
#undef EVENT_ROW
};

static const proto_key_t workflow_rows[] = {
#define WORKFLOW_ROW(name, KIND, R, doc) {"workflow", #name, PROTO_KIND_##KIND, REQUIRED_##R, doc},
    PROTO_WORKFLOW_FIELDS(WORKFLOW_ROW)
#undef WORKFLOW_ROW
};

static const char *const verb_names[] = {
#define VERB_NAME(name, doc, result) #name,
    PROTO_VERBS(VERB_NAME)
#undef VERB_NAME
};

#define BODY_PLAIN false
#define BODY_WORKFLOW true
static const struct {
  const char *kind;
  bool workflow; /* the payload is the workflow plus the event's own fields */
} event_kinds[] = {
#define EVENT_KIND(kind, BODY, doc) {#kind, BODY_##BODY},
    PROTO_EVENTS(EVENT_KIND)
#undef EVENT_KIND
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const proto_key_t *proto_arg_keys(size_t *n) {
  *n = COUNT(arg_rows);
  return arg_rows;
}

const proto_key_t *proto_event_keys(size_t *n) {
  *n = COUNT(event_rows);
  return event_rows;
}

const proto_key_t *proto_workflow_keys(size_t *n) {
  *n = COUNT(workflow_rows);
  return workflow_rows;
}

size_t proto_error_count(void) {
  return COUNT(errors);
}

const char *proto_error_name(size_t i) {
  return i < COUNT(errors) ? errors[i].name : NULL;
}

const char *proto_error_doc(size_t i) {
  return i < COUNT(errors) ? errors[i].doc : NULL;
}

const char *proto_error_doc_of(const char *code) {
  for (size_t i = 0; code && i < COUNT(errors); i++)
    if (strcmp(errors[i].name, code) == 0)
      return errors[i].doc;
  return NULL;
}

bool proto_kind_fits(proto_kind_t kind, const json_t *v) {
  switch (kind) {
  case PROTO_KIND_STR: return json_is_string(v);
  case PROTO_KIND_INT: return json_is_integer(v);
  case PROTO_KIND_BOOL: return json_is_boolean(v);
  case PROTO_KIND_NUM: return json_is_number(v);
  case PROTO_KIND_MAP: return json_is_object(v);
  case PROTO_KIND_LIST: return json_is_array(v);
  case PROTO_KIND_ANY: return v != NULL;
  }
  return false;
}

json_t *proto_msg_call(const proto_msg_t *m) {
  if (!m)
    return NULL;
  if (m->call)
    return json_incref(m->call);
  json_t *v = m->text ? json_loads(m->text, 0, NULL) : NULL;
  if (json_is_object(v))
    return v;
  json_decref(v);
  return NULL;
}

bool proto_verb_known(const char *verb) {
  for (size_t i = 0; verb && i < COUNT(verb_names); i++)
    if (strcmp(verb_names[i], verb) == 0)
      return true;
  return false;
}

/* A JSON value's type in the words of error texts. */
static const char *const json_type_words[] = {
    [JSON_OBJECT] = "a map",  [JSON_ARRAY] = "a list", [JSON_STRING] = "a string", [JSON_INTEGER] = "an int",
    [JSON_REAL] = "a number", [JSON_TRUE] = "a bool",  [JSON_FALSE] = "a bool",    [JSON_NULL] = "null",
};

/* Checks obj against the rows owned by owner (what: "argument" or "field"). */
static int check_rows(const proto_key_t *rows, size_t n, const char *owner, const char *label, const char *what,
                      const json_t *obj, proto_err_t *err) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(rows[i].owner, owner) != 0)
      continue;
    const json_t *v = json_is_object(obj) ? json_object_get(obj, rows[i].name) : NULL;
    if (!v || json_is_null(v)) {
      if (!rows[i].required)
        continue;
      proto_err_set(err, PROTO_E_MISSING, "%s: %s \"%s\" (%s) is required", label, what, rows[i].name,
                    proto_kind_name(rows[i].kind));
      return -EINVAL;
    }
    if (!proto_kind_fits(rows[i].kind, v)) {
      proto_err_set(err, PROTO_E_FIELD_TYPE, "%s: %s \"%s\" must be %s %s, not %s", label, what, rows[i].name,
                    rows[i].kind == PROTO_KIND_INT ? "an" : "a", proto_kind_name(rows[i].kind),
                    json_type_words[json_typeof(v)]);
      return -EINVAL;
    }
  }
  return 0;
}

int proto_args_check(const char *verb, const json_t *args, proto_err_t *err) {
  if (!proto_verb_known(verb)) {
    char q[4 * PROTO_QUOTE_MAX + 4];
    proto_quote(q, sizeof q, verb ? verb : "", verb ? strlen(verb) : 0);
    proto_err_set(err, PROTO_E_VALUE, "unknown verb \"%s\"", q);
    return -ENOENT;
  }
  if (args && !json_is_object(args)) {
    proto_err_set(err, PROTO_E_FIELD_TYPE, "%s: args must be a map", verb);
    return -EINVAL;
  }
  return check_rows(arg_rows, COUNT(arg_rows), verb, verb, "argument", args, err);
}

bool proto_event_is_workflow(const char *kind) {
  for (size_t i = 0; kind && i < COUNT(event_kinds); i++)
    if (strcmp(event_kinds[i].kind, kind) == 0)
      return event_kinds[i].workflow;
  return false;
}

int proto_event_check(const char *kind, const json_t *payload, proto_err_t *err) {
  for (size_t i = 0; kind && i < COUNT(event_kinds); i++) {
    if (strcmp(event_kinds[i].kind, kind) != 0)
      continue;
    if (payload && !json_is_object(payload)) {
      proto_err_set(err, PROTO_E_FIELD_TYPE, "event %s: the payload must be a map", kind);
      return -EINVAL;
    }
    if (event_kinds[i].workflow &&
        check_rows(workflow_rows, COUNT(workflow_rows), "workflow", kind, "workflow field", payload, err) < 0)
      return -EINVAL;
    return check_rows(event_rows, COUNT(event_rows), kind, kind, "field", payload, err);
  }
  char q[4 * PROTO_QUOTE_MAX + 4];
  proto_quote(q, sizeof q, kind ? kind : "", kind ? strlen(kind) : 0);
  proto_err_set(err, PROTO_E_VALUE, "unknown event kind \"%s\"", q);
  return -ENOENT;
}
