// libipp_engine_mpi.so: what `ipengine --mpi` dlopen()s (see engine/mpi_module.hpp).
#include "engine/mpi_module.hpp"

#include <mpi.h>

#include <cstdio>

extern "C" {

int ipp_engine_mpi_init(IppMpiWorld* world, char* error, int error_size) {
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(MPI_COMM_WORLD, &world->rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(MPI_COMM_WORLD, &world->size);
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    std::snprintf(error, static_cast<size_t>(error_size), "%s", text);
    return rc;
  }
  static MPI_Comm comm_world = MPI_COMM_WORLD;
  world->comm = &comm_world;
  return 0;
}

void ipp_engine_mpi_finalize() { MPI_Finalize(); }

}  // extern "C"
