#!/usr/bin/env bash
# Installs soi and what it needs on a fresh Debian machine with Python 3.
#   bash setup.sh        the library, its command line and the audio extras
#   bash setup.sh dev    the same plus the test tools
#   bash setup.sh scenes the same plus acoustic scene classification (librosa, megaglest-data)
# torch is pinned to the CPU build that these machines carry locally: an unpinned
# torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

lists=(packaging/apt-packages.txt)
[ "${1:-}" = "scenes" ] && lists+=(packaging/apt-packages-scenes.txt)
need=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done < <(cat "${lists[@]}")
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
[ "${1:-}" = "scenes" ] && extra="all,scenes"
python3 -m pip install -q --disable-pip-version-check -e "$here[$extra]" 2>&1 | grep -v "as the 'root' user" || true
python3 -c "import soi, torch; print(f'setup: soi {soi.__version__} with torch {torch.__version__}')"
