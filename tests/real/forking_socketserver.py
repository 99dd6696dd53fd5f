"""Python's socketserver.ForkingTCPServer: the server process accepts, forks
a child per connection and closes its own copy in the parent (ForkingMixIn
does that right). The handler never returns (it waits on an event nobody
sets), so each child keeps its connection. Prints the port."""
import socketserver
import threading


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        threading.Event().wait()  # BUG: a handler that never finishes


server = socketserver.ForkingTCPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
