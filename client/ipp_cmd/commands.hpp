// The ipp subcommands: each takes its own argv (argv[0] is the subcommand's name) and returns
// the exit code.
#pragma once

namespace ipp_cmd {

// cluster_commands.cpp: the cluster as a whole, through the hub.
int Engines(int argc, char** argv);
int Status(int argc, char** argv);
int ResultCmd(int argc, char** argv);
int Abort(int argc, char** argv);
int Shutdown(int argc, char** argv);

// native_commands.cpp: requests sent to each native engine.
int Px(int argc, char** argv);
int Functions(int argc, char** argv);
int Load(int argc, char** argv);

// map_command.cpp
int Map(int argc, char** argv);

// farm_command.cpp
int Farm(int argc, char** argv);

// top_command.cpp: the controller's dashboard API, live in the terminal.
int Top(int argc, char** argv);

}  // namespace ipp_cmd
