#!/bin/sh
# A container-style entrypoint: it runs helpers (each a fork + exec that the
# shell waits for), then exec's the server, which so inherits this shell's
# reaped-children counters without ever forking itself.
set -e
mkdir -p "${TMPDIR:-/tmp}"
/bin/true
date >/dev/null
exec "$@"
