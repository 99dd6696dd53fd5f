"""A TCP front end that hands every accepted connection to a separate worker
process over a unix socket (SCM_RIGHTS, socket.send_fds) and closes its own
copy; the worker keeps what it received and never closes it. The two are
started separately: no ancestry links them.

  fd_pass.py worker PATH      listen on unix socket PATH; print "ready"
  fd_pass.py front PATH       listen on 127.0.0.1:0, connect to PATH; print the port
"""
import signal
import socket
import sys

role, path = sys.argv[1], sys.argv[2]
if role == "worker":
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(4)
    print("ready", flush=True)
    front, _ = unix.accept()
    received = []
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(front, 16, 8)
        if not msg:
            break
        received.extend(fds)  # BUG: never closed
    signal.pause()  # the front went away: keep the connections anyway
else:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.connect(path)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        socket.send_fds(unix, [b"c"], [conn.fileno()])
        conn.close()
