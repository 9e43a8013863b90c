// DUET_CHECK: invariants (programmer errors). Aborts with the expression, file
// and line. Never used for bad input: that is a Result (core/result.h).
#pragma once

#include <cstdio>
#include <cstdlib>

#define DUET_CHECK(cond)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "duet: internal check failed: %s at %s:%d\n", #cond, \
                   __FILE__, __LINE__);                                       \
      std::abort();                                                           \
    }                                                                         \
  } while (0)
