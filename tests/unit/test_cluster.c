/* Tests of the local cluster's workspace (ctl/cluster.c cluster_workspace):
 * the directory cadre runs in, or the root of the git repository it is in,
 * always as a real path. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"
#include "util.h"

typedef struct {
  const char *name;
  const char *dirs[4]; /* made under the temporary root; "x/.git" makes a repository at x */
  const char *gitfile; /* a .git file (a worktree's) at this directory, or NULL */
  const char *link;    /* "name=target": a symlink under the root, or NULL */
  const char *cwd;     /* where cadre runs */
  const char *want;    /* the workspace, relative to the root ("" is the root) */
} ws_case_t;

static const ws_case_t cases[] = {
    {"a plain directory is its own workspace", {"a/b"}, NULL, NULL, "a/b", "a/b"},
    {"inside a repository: its root", {"repo/.git", "repo/src/deep"}, NULL, NULL, "repo/src/deep", "repo"},
    {"the repository root itself", {"repo/.git"}, NULL, NULL, "repo", "repo"},
    {"a worktree's .git file counts", {"wt/src"}, "wt", NULL, "wt/src", "wt"},
    {"nested repositories: the innermost",
     {"outer/.git", "outer/inner/.git", "outer/inner/x"},
     NULL,
     NULL,
     "outer/inner/x",
     "outer/inner"},
    {"a directory named like .git below does not count", {"p/q/.github"}, NULL, NULL, "p/q", "p/q"},
    {"through a symlink: the real path", {"real/.git", "real/sub"}, NULL, "alias=real", "alias/sub", "real"},
};

static void make_dirs(const char *root, const ws_case_t *c) {
  char path[PATH_MAX * 2];
  for (size_t i = 0; i < 4 && c->dirs[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", root, c->dirs[i]);
    assert_int_equal(util_mkdir_p(path, 0700), 0);
  }
  if (c->gitfile) {
    snprintf(path, sizeof path, "%s/%s/.git", root, c->gitfile);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("gitdir: /nowhere\n", f);
    fclose(f);
  }
  if (c->link) {
    char name[PATH_MAX * 2], target[PATH_MAX * 2];
    const char *eq = strchr(c->link, '=');
    snprintf(name, sizeof name, "%s/%.*s", root, (int)(eq - c->link), c->link);
    snprintf(target, sizeof target, "%s/%s", root, eq + 1);
    assert_int_equal(symlink(target, name), 0);
  }
}

static void test_workspace_cases(void **state) {
  (void)state;
  char here[PATH_MAX];
  assert_non_null(getcwd(here, sizeof here));
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const ws_case_t *c = &cases[i];
    char tmpl[] = "/tmp/cadre-test-ws-XXXXXX", root[PATH_MAX], cwd[PATH_MAX * 2], want[PATH_MAX * 2];
    assert_non_null(mkdtemp(tmpl));
    assert_non_null(realpath(tmpl, root));
    make_dirs(root, c);
    snprintf(cwd, sizeof cwd, "%s/%s", root, c->cwd);
    assert_int_equal(chdir(cwd), 0);
    snprintf(want, sizeof want, "%s%s%s", root, c->want[0] ? "/" : "", c->want);
    char got[PATH_MAX] = "untouched";
    int rc = cluster_workspace(got, sizeof got);
    if (rc != 0 || strcmp(got, want) != 0)
      fail_msg("%s: got %d \"%s\", want \"%s\"", c->name, rc, got, want);
    assert_int_equal(chdir(here), 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
  }
}

static void test_workspace_too_long_for_the_buffer(void **state) {
  (void)state;
  char small[4] = "abc";
  assert_int_equal(chdir("/tmp"), 0);
  assert_int_equal(cluster_workspace(small, sizeof small), -ENAMETOOLONG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_workspace_cases),
      cmocka_unit_test(test_workspace_too_long_for_the_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
