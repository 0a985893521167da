"""A mock elevator supervision platform (96333, GB/T 24476 style) for trying
the gateway's connector by hand and with the demo; standard library only.

Usage: elevator_platform.py PORT [--client-id ID] [--secret SECRET]
                                 [--fail-first N] [--expires-in S]

Listens on 127.0.0.1:PORT and serves
  POST /oauth/token      client credentials (HTTP Basic or in the form),
                         answers {"access_token", "token_type", "expires_in"}
  POST /api/alarms       needs "Authorization: Bearer <token>" and "Idempotency-Key"
  POST /api/disposals    the same
Prints "ready" once listening, then one line per request taken:
  <path> <Idempotency-Key> <the JSON body>
and "repeat <key>" for a key taken before (answered 200: the platform drops it).
--fail-first N answers the first N data requests with 503 (to watch the
gateway's retries). The gateway side of the demo (docs/integrations.md):

  [[upstream.elevator_platform]]
  url = "http://127.0.0.1:PORT/api"
  token_url = "http://127.0.0.1:PORT/oauth/token"
  client_id = "demo"
  client_secret = "demo-secret"
"""
import argparse
import base64
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

args = argparse.ArgumentParser()
args.add_argument("port", type=int)
args.add_argument("--client-id", default="demo")
args.add_argument("--secret", default="demo-secret")
args.add_argument("--fail-first", type=int, default=0)
args.add_argument("--expires-in", type=int, default=3600)
opts = args.parse_args()

lock = threading.Lock()
state = {"tokens": set(), "seen": set(), "fail": opts.fail_first}


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/oauth/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            basic = "Basic " + base64.b64encode(f"{opts.client_id}:{opts.secret}".encode()).decode()
            by_form = form.get("client_id") == opts.client_id and form.get("client_secret") == opts.secret
            if form.get("grant_type") != "client_credentials" or not (
                self.headers.get("Authorization") == basic or by_form
            ):
                return self.answer(401, {"error": "invalid_client"})
            token = secrets.token_hex(16)
            with lock:
                state["tokens"].add(token)
            return self.answer(200, {"access_token": token, "token_type": "bearer", "expires_in": opts.expires_in})
        if self.path not in ("/api/alarms", "/api/disposals"):
            return self.answer(404, {"code": 404, "msg": "no such endpoint"})
        auth = self.headers.get("Authorization", "")
        key = self.headers.get("Idempotency-Key", "")
        with lock:
            if not auth.startswith("Bearer ") or auth[7:] not in state["tokens"]:
                return self.answer(401, {"code": 401, "msg": "token"})
            if state["fail"] > 0:
                state["fail"] -= 1
                return self.answer(503, {"code": 503, "msg": "busy"})
            repeat = key in state["seen"]
            state["seen"].add(key)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(400, {"code": 400, "msg": "not JSON"})
        if repeat:
            print(f"repeat {key}", flush=True)
        else:
            print(f"{self.path} {key} {json.dumps(body, ensure_ascii=False)}", flush=True)
        return self.answer(200, {"code": 0, "msg": "ok"})

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
print("ready", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
