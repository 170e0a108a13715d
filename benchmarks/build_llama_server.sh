#!/bin/sh
# Build llama.cpp's own C++ llama-server from the llama.cpp sources inside llama-cpp-python's
# source package (the version the llm extra installs), for benchmarks/llm.py --llama-server.
#   sh benchmarks/build_llama_server.sh [BUILD_DIR]      (default: .cache/llama-server)
# Prints the binary's path. Several minutes on 2 cores; a second run reuses the build.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/.cache/llama-server}
python=${PYTHON:-$here/.venv/bin/python}
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
mkdir -p "$build"
if [ ! -x "$build/out/bin/llama-server" ]; then
    if [ ! -d "$build/src" ]; then
        "$python" -m pip download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$version" -d "$build/sdist"
        mkdir -p "$build/src"
        tar -xzf "$build/sdist/llama_cpp_python-$version.tar.gz" -C "$build/src" --strip-components=1
    fi
    cmake -S "$build/src/vendor/llama.cpp" -B "$build/out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >"$build/cmake.log"
    cmake --build "$build/out" --target llama-server -j "$(nproc)" >"$build/build.log"
fi
echo "$build/out/bin/llama-server"
