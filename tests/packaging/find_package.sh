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
