# A test service in Python: GET /health on 127.0.0.1:$PORT (it survives a SIGKILLed PM2
# daemon, as non-Node apps do).
import http.server, os

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
