#!/usr/bin/env bash
# Installs what the web page's browser tests need, when missing:
#   Debian's chromium (the browser the tests drive; Playwright never downloads one)
#   and Playwright's Python package into the project's venv.
# Needs root and apt-get for chromium; elsewhere it says what is missing and
# carries on, and tests/web skips with that reason.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py=python3
if ! "$py" -c "import playwright" >/dev/null 2>&1; then
  "$py" -m pip install -q 'playwright>=1.40' || echo "install-browser: could not install playwright; browser tests will skip" >&2
fi
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: chromium is missing (needs root and apt-get); browser tests will skip" >&2
  exit 0
fi
echo "install-browser: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
  || apt-get install -y --no-install-recommends chromium fonts-dejavu-core
