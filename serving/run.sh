#!/bin/sh
# Serve the bundle this script sits in, on 127.0.0.1:8000 by default.
#   ./serving/run.sh                       # settings from server.json
#   ./serving/run.sh --port 8080 --threads 4
# Needs `pip install 'smoledge[serve]'` (no torch).
set -eu
BUNDLE="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v smoledge >/dev/null 2>&1; then
  echo "run.sh: the 'smoledge' command is not installed; run: pip install 'smoledge[serve]'" >&2
  exit 1
fi
exec smoledge serve "$BUNDLE" "$@"
