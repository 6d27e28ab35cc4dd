#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through executable_path;
# Playwright's own browser download cannot reach its host from here).
#
# Usage: infra/scripts/chromium.sh ensure|path
#
#   ensure  install the `chromium` package when absent (root only); print its path last
#   path    print the path of the installed browser, or fail
set -euo pipefail

PROG="chromium.sh"
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_chromium() {
  local c
  for c in "${FAILCAT_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$c" ] && [ -x "$c" ]; then printf '%s\n' "$c"; return 0; fi
  done
  return 1
}

case "${1:-}" in
  ensure)
    find_chromium || { apt_install "Chromium (/usr/bin/chromium)" chromium; find_chromium; } \
      || die "chromium installed but /usr/bin/chromium is missing"
    ;;
  path) find_chromium || die "not installed (run: $0 ensure)" ;;
  *) echo "usage: $PROG ensure|path" >&2; exit 2 ;;
esac
