#!/usr/bin/env bash
# A user's project against ipp, the three ways the README shows: find_package(ipp) from an
# installed copy, find_package(ipp) from the build tree, and a plugin built with plain g++ from a
# directory outside the repository.  Usage: find_package.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
check() { "$@" > "$d/step.log" 2>&1 || { echo "failed: $*"; cat "$d/step.log"; exit 1; }; }

# Installed copy: headers, libraries, executables, example plugins, CMake package.
check cmake --install "$build" --prefix "$d/prefix"
for f in bin/ipcontroller bin/ipengine bin/ipcluster bin/ipp include/ipp/client.hpp lib/ipp/libipp_example_pi.so; do
  [[ -e $d/prefix/$f ]] || { echo "not installed: $f"; exit 1; }
done
# With MPI: the installed ipengine --mpi finds its MPI module (it gets as far as registering).
if [[ -e $build/lib/libipp_engine_mpi.so ]]; then
  [[ -e $d/prefix/lib/ipp/libipp_engine_mpi.so ]] || { echo "not installed: lib/ipp/libipp_engine_mpi.so"; exit 1; }
  mpi_out=$(cd "$d" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_oob_tcp_if_include=lo \
    IPP_CONNECTION_INFO='{"key": "k", "registration": 9, "interface": "tcp://127.0.0.1"}' \
    "$d/prefix/bin/ipengine" --mpi --timeout 0.2 2>&1 || true)
  grep -q 'no answer from the controller' <<< "$mpi_out" || { echo "installed ipengine --mpi: $mpi_out"; exit 1; }
fi
check cmake -S "$src/examples/consumer" -B "$d/installed" -G Ninja -DCMAKE_PREFIX_PATH="$d/prefix"
check cmake --build "$d/installed"
"$d/installed/consumer" /nonexistent.json | grep -q 'no cluster running'
[[ -f $d/installed/libsquare.so ]]

# The build tree, without installing.
check cmake -S "$src/examples/consumer" -B "$d/buildtree" -G Ninja -Dipp_DIR="$build"
check cmake --build "$d/buildtree"
"$d/buildtree/consumer" /nonexistent.json | grep -q 'no cluster running'

# The README's one-line plugin build, run from elsewhere.
cp "$src/examples/consumer/square.cpp" "$d/square.cpp"
(cd "$d" && check g++ -std=c++20 -O2 -shared -fPIC -I "$src/include" square.cpp -o libsquare.so)
[[ -f $d/libsquare.so ]]
echo "find_package: installed, build tree and plain g++ all work"
