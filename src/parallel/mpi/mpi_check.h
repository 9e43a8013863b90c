// DUET_MPI_TRY: every MPI call of src/parallel/mpi/ goes through it; a failure
// becomes an Error holding MPI's own message, the call and the place.
#pragma once

#include <mpi.h>

#include <string>

#include "core/result.h"

#define DUET_MPI_TRY(expr)                                                                      \
  do {                                                                                          \
    const int duet_mpi_code_ = (expr);                                                          \
    if (duet_mpi_code_ != MPI_SUCCESS) {                                                        \
      char duet_mpi_text_[MPI_MAX_ERROR_STRING];                                                \
      int duet_mpi_len_ = 0;                                                                    \
      MPI_Error_string(duet_mpi_code_, duet_mpi_text_, &duet_mpi_len_);                         \
      return ::duet::make_error("MPI error (", std::string(duet_mpi_text_, duet_mpi_len_), ") in ", \
                                #expr, " at ", __FILE__, ":", __LINE__);                        \
    }                                                                                           \
  } while (0)
