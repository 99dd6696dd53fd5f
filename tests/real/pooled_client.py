"""A requests.Session (urllib3 connection pool) that makes one GET and keeps
the connection in its pool, as every long-lived client does between calls.
The pool only notices a closed connection when it next uses it, so while this
client idles its socket sits in CLOSE_WAIT once the server closed it. Prints
"done" after the response, then waits for stdin to close."""
import sys

import requests

session = requests.Session()
response = session.get(sys.argv[1], timeout=10)
response.raise_for_status()
print("done", flush=True)
sys.stdin.read()
