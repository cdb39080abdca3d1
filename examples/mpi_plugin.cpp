// Example plugin for `ipengine --mpi` under mpiexec: an MPI_Allreduce across the engines.
//
//   mpiexec -n 4 ipengine --mpi --load build/lib/libipp_example_mpi.so
//   then apply "mpi.allreduce_sum" with a number on every engine: each gets the total back.
#include <mpi.h>

#include <ipp/engine_plugin.hpp>

IPP_PLUGIN(registry) {
  registry.add("mpi.allreduce_sum", [](const ipp::Json& args, ipp::CallContext& ctx) {
    if (!ctx.mpi_comm()) throw std::runtime_error("this engine was not started with --mpi");
    MPI_Comm comm = *static_cast<const MPI_Comm*>(ctx.mpi_comm());
    double mine = args.get<double>(), total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, comm);
    return ipp::Json{{"rank", ctx.mpi_rank()}, {"size", ctx.mpi_size()}, {"sum", total}};
  }, "MPI_Allreduce(SUM) of a number across all engines of the MPI job");
}
