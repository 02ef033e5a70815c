/* Tests of the store's meta values (broker/store.c store_meta_get/set): what
 * the broker keeps by name across a restart, such as a session's workspace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"

typedef struct {
  const char *name;
  const char *set_key, *set_value; /* set first, when set_key is not NULL */
  const char *get_key;
  size_t len; /* buffer given to get */
  int want_rc;
  const char *want; /* the value read, or "untouched" */
} meta_case_t;

static const meta_case_t cases[] = {
    {"absent", NULL, NULL, "workspace:main", 64, -1, "untouched"},
    {"set then read", "workspace:main", "/home/u/a", "workspace:main", 64, 0, "/home/u/a"},
    {"set again replaces", "workspace:main", "/home/u/b", "workspace:main", 64, 0, "/home/u/b"},
    {"keys are separate", "workspace:reviewer-1", "/srv/x", "workspace:main", 64, 0, "/home/u/b"},
    {"the other key", NULL, NULL, "workspace:reviewer-1", 64, 0, "/srv/x"},
    {"too long for the buffer: untouched", NULL, NULL, "workspace:main", 9, -1, "untouched"},
    {"exactly fits with its NUL", NULL, NULL, "workspace:main", 10, 0, "/home/u/b"},
    {"the schema entry is still there", NULL, NULL, "schema", 8, 0, "1"},
};

static void test_meta_cases(void **state) {
  (void)state;
  char dir[] = "/tmp/cadre-test-meta-XXXXXX", err[256];
  assert_non_null(mkdtemp(dir));
  store_t *s = store_open(dir, err, sizeof err);
  assert_non_null(s);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const meta_case_t *c = &cases[i];
    if (c->set_key)
      assert_int_equal(store_meta_set(s, c->set_key, c->set_value), 0);
    char got[64] = "untouched";
    int rc = store_meta_get(s, c->get_key, got, c->len);
    if (rc != c->want_rc || strcmp(got, c->want) != 0)
      fail_msg("%s: got %d \"%s\", want %d \"%s\"", c->name, rc, got, c->want_rc, c->want);
  }
  /* Kept across a restart. */
  store_close(&s);
  s = store_open(dir, err, sizeof err);
  assert_non_null(s);
  char got[64] = "";
  assert_int_equal(store_meta_get(s, "workspace:reviewer-1", got, sizeof got), 0);
  assert_string_equal(got, "/srv/x");
  store_close(&s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_meta_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
