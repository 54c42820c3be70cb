#!/bin/sh
# Installs Node-RED 4 (the last line that runs on Debian 12's node 18/20; Node-RED 5 needs node 22.9+)
# with npm into var/nodered/ of the checkout (ignored by git), for nodered_bench.py. Not part of
# ./run or CI: the benchmark is not a test. Needs node and npm (apt-get install nodejs npm).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${NODERED_HOME:-$here/../../var/nodered}
command -v npm >/dev/null || { echo "npm not found: apt-get install nodejs npm" >&2; exit 1; }
mkdir -p "$dest"
cd "$dest"
[ -f package.json ] || echo '{"name": "urbansense-nodered-bench", "private": true}' > package.json
npm install --no-audit --no-fund --omit=dev node-red@4.1.8
echo "Node-RED $(node -p "require('./node_modules/node-red/package.json').version") in $dest"
