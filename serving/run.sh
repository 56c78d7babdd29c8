#!/bin/sh
# Serve the bundle this script sits in, on 127.0.0.1:8000 by default.
#   ./serving/run.sh                       # the default model, settings from server.json
#   ./serving/run.sh --device rpi5-8gb     # the model evaluate selected for that device profile
#   ./serving/run.sh --port 8080 --threads 4
# Needs `pip install 'smoledge[serve]'` (no torch). SMOLEDGE=/path/to/smoledge picks the command
# (e.g. a venv's), otherwise the one on PATH.
set -eu
BUNDLE="$(cd "$(dirname "$0")/.." && pwd)"
SMOLEDGE="${SMOLEDGE:-smoledge}"
if ! command -v "$SMOLEDGE" >/dev/null 2>&1; then
  echo "run.sh: the '$SMOLEDGE' command is not installed; run: pip install 'smoledge[serve]'" >&2
  exit 1
fi
exec "$SMOLEDGE" serve "$BUNDLE" "$@"
