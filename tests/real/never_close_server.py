"""A single-process TCP server that accepts and never closes.

It takes its listener from socket activation (LISTEN_FDS / LISTEN_PID, the
listener at fd 3) when it is given one, else binds 127.0.0.1:PORT from argv.
Accepted sockets are close-on-exec (Python's sockets are non-inheritable,
accept4(SOCK_CLOEXEC)); they are kept in a list and never read or closed.
It never forks. It prints "ready" once it is accepting.
"""
import os
import socket
import sys

if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
    listener = socket.socket(fileno=3)
else:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(16)
print("ready", flush=True)
kept = []
while True:
    conn, _ = listener.accept()
    kept.append(conn)
