// The C interface between ipengine and its MPI module (libipp_engine_mpi.so), the one part of
// the engine that links libmpi. A plain engine never loads it; `ipengine --mpi` dlopen()s it
// (MpiWorld::Start in engine/mpi_world.hpp), so libmpi and its dependencies cost only the
// engines that use them. Called on the engine's main thread only.
#pragma once

extern "C" {

struct IppMpiWorld {
  int rank;
  int size;
  const void* comm;  // points to an MPI_Comm (MPI_COMM_WORLD) that lives until finalize
};

// MPI_Init_thread(FUNNELED) and MPI_COMM_WORLD's rank and size. Returns 0, or an MPI error
// code after writing a description of it (NUL-terminated) into `error`.
int ipp_engine_mpi_init(IppMpiWorld* world, char* error, int error_size);
void ipp_engine_mpi_finalize();

}  // extern "C"

// Its file name, and the name of the function that starts it (for dlsym).
inline constexpr const char* kIppMpiModuleName = "libipp_engine_mpi.so";
