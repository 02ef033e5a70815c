/* fuzz.h: the entry point every fuzz target defines (libFuzzer's), and what
 * the targets share. Built two ways: with clang -Dfuzz=true as libFuzzer
 * executables (fuzz_*), and with any compiler as replay programs that run a
 * target over files (its seed corpus and the inputs of crashes once found,
 * kept as regression tests: the test fuzz-corpus). */
#ifndef CADRE_FUZZ_H
#define CADRE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data as a NUL-terminated string (caller frees). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s) {
    memcpy(s, data, size);
    s[size] = '\0';
  }
  return s;
}

/* Stops the program: a broken invariant is a finding like a crash. */
#define FUZZ_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "fuzz: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                             \
    }                                                                                      \
  } while (0)

#endif
