#include "engine/mpi_world.hpp"

#include <dlfcn.h>

#include <filesystem>

#include "engine/mpi_module.hpp"

namespace ipp::engine {

std::vector<std::string> MpiWorld::ModuleCandidates(const std::string& executable) {
  std::filesystem::path dir = std::filesystem::path(executable).parent_path();
  std::vector<std::string> out{(dir / IPP_MPI_MODULE_DIR / kIppMpiModuleName).lexically_normal().string()};
  std::string build_tree = (dir / ".." / "lib" / kIppMpiModuleName).lexically_normal().string();
  if (build_tree != out.front()) out.push_back(build_tree);
  return out;
}

Result<std::unique_ptr<MpiWorld>> MpiWorld::Start() {
  std::error_code ec;
  std::string executable = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return Status::Internal("ipengine --mpi: cannot find its own executable: " + ec.message());
  std::vector<std::string> candidates = ModuleCandidates(executable);
  std::string path;
  for (const std::string& candidate : candidates) {
    if (std::filesystem::exists(candidate, ec)) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) {
    std::string looked;
    for (const std::string& c : candidates) looked += (looked.empty() ? "" : ", ") + c;
    return Status::NotFound(std::string("ipengine --mpi needs its MPI module ") + kIppMpiModuleName +
                            ", which is not installed beside this ipengine (looked for " + looked +
                            "); build ipp with MPI (libopenmpi-dev) and install it");
  }
  // RTLD_GLOBAL: Open MPI loads its own components, which look for libmpi's symbols globally.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!handle) return Status::Unavailable("ipengine --mpi: cannot load " + path + ": " + dlerror());
  auto init = reinterpret_cast<decltype(&ipp_engine_mpi_init)>(dlsym(handle, "ipp_engine_mpi_init"));
  auto finalize = reinterpret_cast<decltype(&ipp_engine_mpi_finalize)>(dlsym(handle, "ipp_engine_mpi_finalize"));
  if (!init || !finalize) return Status::InvalidArgument(path + " is not an ipengine MPI module (no ipp_engine_mpi_init)");
  IppMpiWorld world{0, 1, nullptr};
  char error[512] = {};
  if (int rc = init(&world, error, sizeof error); rc != 0) {
    return Status::Unavailable("ipengine --mpi: MPI_Init failed (" + std::to_string(rc) + "): " + error);
  }
  std::unique_ptr<MpiWorld> out(new MpiWorld);
  out->finalize_ = finalize;
  out->rank_ = world.rank;
  out->size_ = world.size;
  out->comm_ = world.comm;
  return out;
}

MpiWorld::~MpiWorld() {
  if (finalize_) finalize_();
}

}  // namespace ipp::engine
