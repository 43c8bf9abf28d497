#!/usr/bin/env bash
# Installs soi and what it needs on a fresh Debian machine with Python 3.
#   bash setup.sh        the library, its command line and the audio extras
#   bash setup.sh dev    the same plus the test tools
# torch is pinned to the CPU build that these machines carry locally: an unpinned
# torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

need=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done < packaging/apt-packages.txt
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing Debian packages: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "as the 'root' user" || true
extra="all"
[ "${1:-}" = "dev" ] && extra="dev"
python3 -m pip install -q --disable-pip-version-check -e "$here[$extra]" 2>&1 | grep -v "as the 'root' user" || true
python3 -c "import soi, torch; print(f'setup: soi {soi.__version__} with torch {torch.__version__}')"
