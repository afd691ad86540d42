#!/usr/bin/env bash
# Does `pip install vidalign` find wheels for every dependency on x86_64 Linux, aarch64 Linux and Apple silicon?
# Resolves the base dependencies of pyproject.toml (and their whole tree) for each platform with building from
# source disabled; no package is installed. Needs uv (pip install uv) and the network to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
req=$(mktemp)
$PY -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))' > "$req"
status=0
for platform in x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin; do
  if out=$(uv pip compile --no-config --quiet --python-version "${PYVER:-3.11}" --python-platform "$platform" \
             --only-binary :all: --index-url https://pypi.org/simple "$req" 2>&1); then
    echo "$platform: OK, $(grep -c '==' <<< "$out") packages, all from wheels"
  else
    echo "$platform: FAILED"; grep -v '^ *#' <<< "$out" | head -5; status=1
  fi
done
rm -f "$req"
exit $status
