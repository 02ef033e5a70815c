/* nodes.c: the registry of peers (agent daemons and controllers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "util.h"

peer_t *peer_find(broker_t *b, const void *id, size_t idlen) {
  peer_t *p = NULL;
  HASH_FIND(hh, b->peer_ids, id, idlen, p);
  return p;
}

peer_t *peer_find_name(broker_t *b, peer_role_t role, const char *name) {
  for (peer_t *p = b->peers; p; p = p->next)
    if (!p->dead && p->role == role && p->name && strcmp(p->name, name) == 0)
      return p;
  return NULL;
}

const char *peer_label(const peer_t *p) {
  return p->name ? p->name : "?";
}

void peers_sweep(broker_t *b) {
  if (b->dead_peers == 0)
    return;
  for (peer_t **pp = &b->controllers; *pp;) {
    if ((*pp)->dead)
      *pp = (*pp)->cnext;
    else
      pp = &(*pp)->cnext;
  }
  for (peer_t **pp = &b->peers; *pp;) {
    peer_t *p = *pp;
    if (p->dead) {
      *pp = p->next;
      peer_free(p);
    } else {
      pp = &p->next;
    }
  }
  b->dead_peers = 0;
}

void peers_free_all(broker_t *b) {
  HASH_CLEAR(hh, b->peer_ids);
  b->controllers = NULL;
  while (b->peers) {
    peer_t *p = b->peers;
    b->peers = p->next;
    peer_free(p);
  }
  b->dead_peers = 0;
}

void peer_free(peer_t *p) {
  free(p->name);
  free(p->host);
  free(p->version);
  free(p->workspace);
  free(p->sandbox);
  json_decref(p->models);
  json_decref(p->providers);
  json_decref(p->tools);
  json_decref(p->labels);
  json_decref(p->watch);
  json_decref(p->missed_turns);
  free(p);
}

void peer_remove(broker_t *b, peer_t *p, const char *why) {
  if (p->dead)
    return;
  p->dead = true;
  if (p->hh.tbl) /* in b->peer_ids (a peer a unit test links in by hand is not) */
    HASH_DELETE(hh, b->peer_ids, p);
  b->dead_peers++;
  if (p->role == PEER_NODE) {
    log_info("node %s left (%s)", peer_label(p), why);
    if (b->hooks.node_lost)
      b->hooks.node_lost(b, p);
    broker_event(b, "node_left", NULL, 0, json_pack("{s:s, s:s}", "name", peer_label(p), "reason", why));
  } else {
    log_debug("controller %s left (%s)", peer_label(p), why);
  }
}

bool peer_has_labels(const peer_t *p, const json_t *want) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)want, k, v) {
    const char *have = json_string_value(json_object_get(p->labels, k));
    if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
      return false;
  }
  return true;
}

const char *peer_workspace_id(const peer_t *p) {
  const char *label = json_string_value(json_object_get(p->labels, "workspace"));
  return label && label[0] ? label : peer_label(p);
}

static const char *drain_reason(const peer_t *p) {
  return p->drained ? "admin" : p->stopping ? "stopping" : NULL;
}

static void draining_event(broker_t *b, peer_t *p) {
  const char *why = drain_reason(p);
  json_t *payload = json_pack("{s:s, s:b}", "name", peer_label(p), "draining", why != NULL);
  if (why)
    json_object_set_new(payload, "reason", json_string(why));
  log_info("node %s %s", peer_label(p),
           why ? (p->drained ? "drained (cadre drain)" : "draining (stopping)") : "takes work again");
  broker_event(b, "node_draining", NULL, 0, payload);
}

peer_t *nodes_set_drain(broker_t *b, const char *name, bool on) {
  char key[200];
  snprintf(key, sizeof key, "drain:%s", name);
  peer_t *p = peer_find_name(b, PEER_NODE, name);
  if (!p)
    return NULL;
  if (on ? store_meta_set(b->store, key, "1") < 0 : store_meta_delete(b->store, key) < 0)
    log_error("state: cannot keep the drain of %s: %s", name, store_errmsg(b->store));
  if (p->drained != on) {
    p->drained = on;
    draining_event(b, p);
  }
  return p;
}

void nodes_set_stopping(broker_t *b, peer_t *p, bool on) {
  if (p->role != PEER_NODE || p->stopping == on)
    return;
  p->stopping = on;
  draining_event(b, p);
}

/* Copies a list of strings from a hello, keeping only strings. */
static json_t *string_list(const json_t *in, const char *dflt) {
  json_t *out = json_array();
  size_t i;
  json_t *v;
  if (json_is_array(in))
    json_array_foreach(in, i, v) if (json_is_string(v)) json_array_append(out, v);
  if (json_array_size(out) == 0 && dflt)
    json_array_append_new(out, json_string(dflt));
  return out;
}

static int fill_peer(peer_t *p, const proto_msg_t *m, char *err, size_t errlen) {
  if (strcmp(m->role, "node") == 0) {
    p->role = PEER_NODE;
  } else if (strcmp(m->role, "controller") == 0) {
    p->role = PEER_CONTROLLER;
  } else {
    snprintf(err, errlen, "hello: role must be \"node\" or \"controller\"");
    return -1;
  }
  if (!m->name[0] || strlen(m->name) > 128) {
    snprintf(err, errlen, "hello: name must be 1 to 128 characters");
    return -1;
  }
  if (p->role == PEER_NODE && (!PROTO_HAS(m, slots) || m->slots < 1 || m->slots > 1024)) {
    snprintf(err, errlen, "hello: a node must say its slots (1 to 1024)");
    return -1;
  }
  p->name = strdup(m->name);
  p->version = strdup(m->version);
  p->host = strdup(m->host ? m->host : "");
  p->workspace = strdup(m->workspace ? m->workspace : "");
  p->sandbox = strdup(m->sandbox ? m->sandbox : "unknown");
  p->slots = PROTO_HAS(m, slots) ? (int)m->slots : 0;
  p->models = string_list(m->models, "*");
  p->providers = string_list(m->providers, "*");
  p->tools = string_list(m->tools, NULL);
  p->labels = m->labels ? json_deep_copy(m->labels) : json_object();
  p->watch = json_object();
  return 0;
}

peer_t *peer_hello(broker_t *b, const void *id, size_t idlen, const proto_msg_t *hello, char *err, size_t errlen) {
  if (idlen > PEER_ID_MAX) {
    snprintf(err, errlen, "routing id too long");
    return NULL;
  }
  /* A hello from a known connection re-registers it from scratch. */
  peer_t *old = peer_find(b, id, idlen);
  if (old)
    peer_remove(b, old, "said hello again");
  peer_t *p = calloc(1, sizeof *p);
  if (!p) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(p->id, id, idlen);
  p->idlen = idlen;
  if (fill_peer(p, hello, err, errlen) < 0) {
    peer_free(p);
    return NULL;
  }
  /* A node that reconnected under a new routing id replaces its stale entry. */
  peer_t *same = peer_find_name(b, p->role, p->name);
  if (same && p->role == PEER_NODE)
    peer_remove(b, same, "replaced by a new connection");
  p->last_seen = util_now_ms();
  p->joined = util_wall_ms();
  char key[200], val[8];
  snprintf(key, sizeof key, "drain:%s", p->name);
  p->drained = p->role == PEER_NODE && store_meta_get(b->store, key, val, sizeof val) == 0;
  p->next = b->peers;
  b->peers = p;
  HASH_ADD(hh, b->peer_ids, id, p->idlen, p);
  if (p->role == PEER_CONTROLLER) {
    p->cnext = b->controllers;
    b->controllers = p;
  }
  if (p->role == PEER_NODE)
    log_info("node %s joined from %s (%d slots, workspace %s)", p->name, p->host, p->slots, p->workspace);
  else
    log_debug("controller %s connected", p->name);
  return p;
}

static bool list_has(const json_t *list, const char *value) {
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    const char *s = json_string_value(v);
    if (s && (strcmp(s, "*") == 0 || (value && strcmp(s, value) == 0)))
      return true;
  }
  return false;
}

bool peer_serves(const peer_t *p, const char *model, const char *provider) {
  return !p->dead && p->role == PEER_NODE && list_has(p->models, model) && list_has(p->providers, provider);
}

json_t *peer_to_json(const peer_t *p, int64_t now) {
  json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:O, s:O, s:O, s:s, s:O, s:I, s:I, s:b}", "name", p->name, "host",
                        p->host, "version", p->version, "slots", p->slots, "busy", p->busy, "models", p->models,
                        "providers", p->providers, "tools", p->tools, "workspace", p->workspace, "labels", p->labels,
                        "joined_ms", (json_int_t)p->joined, "last_seen_ms_ago", (json_int_t)(now - p->last_seen),
                        "draining", drain_reason(p) != NULL);
  if (o)
    json_object_set_new(o, "sandbox", json_string(p->sandbox ? p->sandbox : "unknown"));
  if (o && drain_reason(p))
    json_object_set_new(o, "drain_reason", json_string(drain_reason(p)));
  json_object_set_new(o, "turns_served", json_integer(p->turns_served));
  return o;
}
