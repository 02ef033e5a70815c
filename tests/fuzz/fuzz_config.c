/* fuzz_config: a config file as cadre-broker, cadre-agentd and cadre read
 * it (through a memfd, so the real loader with its file checks runs). A
 * config that loads can be shown (config_to_json); one that does not says why. */
#include <jansson.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("config.json", 0);
  if (fd < 0)
    return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  char path[64], err[1024];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  cadre_config_t *c = config_load(path, NULL, err, sizeof err);
  if (c) {
    json_t *dump = config_to_json(c);
    FUZZ_CHECK(dump != NULL);
    json_decref(dump);
    config_destroy(&c);
  } else {
    FUZZ_CHECK(err[0] != '\0');
  }
  close(fd);
  return 0;
}
