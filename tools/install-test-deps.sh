#!/usr/bin/env bash
# Installs the real peers the test-suite talks to. Idempotent: each package is installed only when
# missing, and only when we are root (a developer without root gets skips with reasons instead).
set -uo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# Peers added by later issues register themselves here: "<command-or-file>:<debian-package>".
APT_PEERS=(
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
exit 0
