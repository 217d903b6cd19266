#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test when it is missing (needs root and apt).
set -u
# tests/net makes network namespaces and veth pairs with `ip` (iproute2)
if ! command -v ip >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2) >/dev/null 2>&1 \
    || echo "could not install iproute2; tests/net will run on loopback only" >&2
fi
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "could not install chromium; the browser test will be skipped" >&2
else
  echo "chromium missing and not root; the browser test will be skipped" >&2
fi
exit 0
