// MpiWorld: MPI for `ipengine --mpi`, through the engine's MPI module (engine/mpi_module.hpp),
// which is found beside the ipengine executable: in the installed layout
// (<bindir>/<IPP_MPI_MODULE_DIR>, i.e. <libdir>/ipp/) or in the build tree (bin/../lib/).
// Lives on the engine's main thread: MPI calls belong to the thread that started MPI.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ipp/status.hpp"

namespace ipp::engine {

class MpiWorld {
 public:
  // Loads the module and starts MPI (MPI_Init_thread); the error says where the module was
  // looked for when it is missing.
  static Result<std::unique_ptr<MpiWorld>> Start();
  // The paths Start() tries, in order, for the ipengine at `executable`.
  static std::vector<std::string> ModuleCandidates(const std::string& executable);
  ~MpiWorld();  // MPI_Finalize; the module stays loaded (libmpi does not survive unloading)

  int rank() const { return rank_; }
  int size() const { return size_; }
  const void* comm() const { return comm_; }

 private:
  MpiWorld() = default;
  void (*finalize_)() = nullptr;
  int rank_ = 0, size_ = 1;
  const void* comm_ = nullptr;
};

}  // namespace ipp::engine
