#!/bin/sh
# The image's entry point (tested outside a container by integration/test_docker.py).
#   run       the node in the foreground (the default); SIGTERM stops it cleanly
#   console   the node, with its interactive shell attached; leaving the shell stops the node
#   anything else is run as given (e.g. "wolfpacs ctl workers")
set -eu
CONFIG="${WOLFPACS_CONFIG:-/etc/wolfpacs/wolfpacs.toml}"
export WOLFPACS_CONFIG="$CONFIG"

case "${1:-run}" in
run)
    [ "$#" -gt 0 ] && shift
    exec wolfpacs run --config "$CONFIG" "$@"
    ;;
console)
    shift
    wolfpacs run --config "$CONFIG" --log-level warning "$@" &
    node=$!
    trap 'kill -TERM "$node" 2>/dev/null; wait "$node"' EXIT
    trap 'exit 130' INT TERM
    wolfpacs shell --config "$CONFIG"  # it waits for the node's socket
    ;;
*)
    exec "$@"
    ;;
esac
