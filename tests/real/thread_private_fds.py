"""A server whose accepting thread has an fd table of its own: the thread
calls unshare(CLONE_FILES) (through ctypes; glibc's wrapper), which gives it
a private copy of the process's table, then accepts and keeps every
connection in it. /proc/PID/fd (the leader's table) never shows those
sockets; /proc/PID/task/TID/fd does. Prints "PORT TID" once the thread is
accepting.
"""
import ctypes
import os
import socket
import threading

CLONE_FILES = 0x400
libc = ctypes.CDLL(None, use_errno=True)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
ready = threading.Event()
info = {}


def acceptor():
    if libc.unshare(CLONE_FILES) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_FILES)")
    info["tid"] = threading.get_native_id()
    ready.set()
    kept = []
    while True:
        conn, _ = listener.accept()
        kept.append(conn)  # BUG: never closed


threading.Thread(target=acceptor, daemon=True).start()
ready.wait()
print(listener.getsockname()[1], info["tid"], flush=True)
threading.Event().wait()
