// Under mpirun -np N: every rank starts through mpi_start, rank 0's 128-byte
// id (the size of an NCCL unique id) reaches every rank through
// mpi_broadcast_bytes, and the local ranks of one host number 0..local_size-1.
// Exit code 0 on every rank, or a one-line error.
#include <array>
#include <cstdio>

#include "parallel/mpi_bootstrap.h"

int main(int argc, char** argv) {
  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "mpi_bootstrap_check: error: %s\n", m.c_str());
    return 1;
  };
  auto rank = duet::mpi_start(&argc, &argv);
  if (!rank.ok()) return fail(rank.message());
  std::array<unsigned char, 128> id{};
  if (rank->rank == 0) {
    for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<unsigned char>(i * 7 + 3);
  }
  const duet::Status status = duet::mpi_broadcast_bytes(id.data(), static_cast<int>(id.size()), 0);
  if (!status.ok()) return fail(status.message());
  for (size_t i = 0; i < id.size(); ++i) {
    if (id[i] != static_cast<unsigned char>(i * 7 + 3)) return fail("rank " + std::to_string(rank->rank) + ": byte " + std::to_string(i) + " differs from rank 0's");
  }
  if (rank->local_rank < 0 || rank->local_rank >= rank->local_size || rank->local_size > rank->size) {
    return fail("local rank " + std::to_string(rank->local_rank) + " of " + std::to_string(rank->local_size));
  }
  std::printf("rank %d of %d (local %d of %d): id received\n", rank->rank, rank->size, rank->local_rank,
              rank->local_size);
  duet::mpi_stop();
  return 0;
}
