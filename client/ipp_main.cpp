// ipp: use a running cluster from the shell. One subcommand per job; --help on each. The
// subcommands live in ipp_cmd/.
#include "client/ipp_cmd/commands.hpp"
#include "common/cli.hpp"

int main(int argc, char** argv) {
  return ipp::cli::RunSubcommand(argc, argv, "ipp", {
      {"engines", {ipp_cmd::Engines, "list the engines"}},
      {"px", {ipp_cmd::Px, "run a shell command on engines"}},
      {"functions", {ipp_cmd::Functions, "list the native functions on the engines"}},
      {"load", {ipp_cmd::Load, "load a plugin library on the engines"}},
      {"map", {ipp_cmd::Map, "map a native function over JSON lines"}},
      {"farm", {ipp_cmd::Farm, "a resumable, load-balanced shell task farm"}},
      {"status", {ipp_cmd::Status, "queue status"}},
      {"top", {ipp_cmd::Top, "a live view of the cluster (the dashboard, in the terminal)"}},
      {"result", {ipp_cmd::ResultCmd, "fetch results by msg_id"}},
      {"abort", {ipp_cmd::Abort, "abort queued requests"}},
      {"shutdown", {ipp_cmd::Shutdown, "stop the engines and the controller"}},
  });
}
