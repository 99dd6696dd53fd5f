"""A socket-activation supervisor, as systemd does it for a service with
Accept=no: it binds the listener itself, hands it to the service as fd 3 with
LISTEN_FDS=1 and LISTEN_PID=<the service's pid>, and keeps its own copy of the
listener (to restart the service without losing queued connections). It
prints the port, then waits for the service.

Usage: socket_supervisor.py COMMAND [ARGS...]
"""
import os
import socket
import subprocess
import sys

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
port = listener.getsockname()[1]
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3, inheritable=True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="web")
# LISTEN_PID must be the service's own pid: set it in the process that then
# exec's the service, as systemd does between fork and exec.
service = subprocess.Popen(
    ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *sys.argv[1:]],
    pass_fds=[3],
    env=env,
    stdout=subprocess.PIPE,
)
# The service says "ready" once it accepts; then say which port it serves.
if service.stdout.readline().strip() != b"ready":
    sys.exit("the service did not start")
print(port, flush=True)
sys.exit(service.wait())
