#!/usr/bin/env bash
# Debian packages that `make test` and `make run` need, installed when missing (as root), so a fresh
# machine needs nothing by hand:
#   faketime    simulated nights (the process clock is pinned; --now never changes an event's age)
#   postgresql  the PostgreSQL ledger's tests start a real server
#   chromium    the test that opens the reconciliation page as a person would
# Usage: jobs/system_deps.sh [faketime] [postgresql] [chromium]
set -u
have() {
  case "$1" in
    faketime) compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null ;;
    postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ;;
    chromium) command -v chromium >/dev/null 2>&1 ;;
    *) echo "system_deps: unknown package $1" >&2; return 1 ;;
  esac
}
missing=()
for pkg in "$@"; do have "$pkg" || missing+=("$pkg"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system_deps: missing ${missing[*]}: run 'apt-get install -y ${missing[*]}' as root" >&2
  exit 1
fi
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1
for pkg in "${missing[@]}"; do
  have "$pkg" || { echo "system_deps: could not install $pkg" >&2; [ "$pkg" = chromium ] || exit 1; }
done
exit 0
