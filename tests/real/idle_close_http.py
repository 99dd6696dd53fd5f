"""An HTTP/1.1 server that keeps connections alive, then closes a connection
idle for 0.2 s (StreamRequestHandler.timeout): the client's pooled socket is
left half-closed by its peer. Binds 127.0.0.1 on a port from the OS and prints
it."""
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.2

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
