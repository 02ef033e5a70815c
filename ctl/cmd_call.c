/* cmd_call.c: commands that are no fixed verb: cadre call VERB [JSON], cadre keygen FILE. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "keys.h"

int cmd_call(ctl_t *ctl, int argc, char **argv) {
  if (argc < 2) {
    ctl_error(ctl, "usage: cadre call VERB [ARGS-JSON]");
    return 2;
  }
  json_error_t jerr;
  json_t *args = argc > 2 ? json_loads(argv[2], 0, &jerr) : NULL;
  if (argc > 2 && !json_is_object(args)) {
    ctl_error(ctl, "call: ARGS must be a JSON object (%s)", args ? "not an object" : jerr.text);
    json_decref(args);
    return 2;
  }
  json_t *r = ctl_once(ctl, argv[1], args);
  if (!r)
    return 1;
  ctl_print_json(r);
  json_decref(r);
  return 0;
}

int cmd_keygen(ctl_t *ctl, int argc, char **argv) {
  if (argc < 2) {
    ctl_error(ctl, "usage: cadre keygen FILE");
    return 2;
  }
  if (access(argv[1], F_OK) == 0) {
    ctl_error(ctl, "%s exists; not overwriting it", argv[1]);
    return 1;
  }
  keys_pair_t kp;
  if (keys_generate(&kp) < 0 || keys_save_pair(argv[1], &kp) < 0) {
    ctl_error(ctl, "cannot write %s", argv[1]);
    return 1;
  }
  if (ctl->json)
    printf("{\"file\":\"%s\",\"public_key\":\"%s\"}\n", argv[1], kp.public_key);
  else
    printf("%s\n# add this line to the broker's authorized_keys to let the key in\n", kp.public_key);
  keys_wipe(&kp);
  return 0;
}
