#!/usr/bin/env bash
# Screenshot an HTML file with headless Chromium: scripts/screenshot.sh PAGE.html OUT.png [WIDTHxHEIGHT]
# (apt-get install -y chromium). Used to check the page view renders: Arabic shaping, RTL, colours.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 PAGE.html OUT.png [WIDTH,HEIGHT]" >&2; exit 2; fi
html=$(readlink -f "$1"); png=$(readlink -m "$2"); size=${3:-1200,1600}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then echo "error: no chromium found (apt-get install -y chromium)" >&2; exit 2; fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$png" --window-size="$size" \
  "file://$html" >/dev/null 2>&1
test -s "$png" && echo "$png"
