/* fuzz_plan: an agent's answer as the [PLAN] parser reads it; a plan that
 * parses is validated, ordered and formatted as the broker does. */
#include <jansson.h>
#include <stdio.h>

#include "fuzz.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_cstr(data, size);
  char err[256];
  json_t *plan = text ? plan_parse(text, err, sizeof err) : NULL;
  if (plan) {
    json_t *roles = json_pack("[s, s, s, s, s]", "reviewer", "researcher", "implementer", "tester", "optimizer");
    json_t *tools = json_pack("[s, s, s, s]", "execute_bash", "read_file", "write_file_tool", "edit_file");
    json_t *errors = plan_validate(plan, roles, tools);
    if (json_array_size(errors) == 0) {
      json_t *order = plan_order(plan);
      FUZZ_CHECK(order != NULL);
      json_decref(order);
      (void)plan_critical_seconds(plan);
    }
    char *shown = plan_format(plan, NULL);
    free(shown);
    json_decref(errors);
    json_decref(roles);
    json_decref(tools);
    json_decref(plan);
  }
  free(text);
  return 0;
}
