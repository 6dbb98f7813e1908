#!/bin/sh
# Builds llama-server from the llama.cpp source that node-llama-cpp ships, for the bench's side-by-side anchor.
# Output: build/llama.cpp/build/bin/llama-server (build/ is ignored by git). Run: LLAMA_SERVER=<that path> npm run bench
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
src="$root/build/llama.cpp"
jobs=$(nproc 2>/dev/null || echo 2)
[ -f "$bundle" ] || { echo "no bundle at $bundle" >&2; exit 1; }
mkdir -p "$root/build"
if [ ! -d "$src/.git" ]; then
  git clone --quiet "$bundle" "$src"
fi
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
cmake --build "$src/build" --target llama-server -j "$jobs"
echo "built $src/build/bin/llama-server"
echo "run: LLAMA_SERVER=$src/build/bin/llama-server npm run bench"
