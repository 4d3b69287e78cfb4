#!/usr/bin/env python3
"""Loopback webhook receiver for the tests, on Python's http.server.

Listens on 127.0.0.1, answers every POST as its script says, and appends each
request to a log file as one JSON line: path, query, headers (names
lowercased), body, the time it arrived and the status it got.

The script is a JSON file read again on every request, so a test changes the
behaviour by rewriting it. Its keys, all optional, may also be given per path
under "paths": {"/x": {...}}:

  handshake   how to answer url_verification: "raw" (default), "quoted",
              "json", "wrong", or "status:NNN"
  statuses    list of statuses for the next requests, used up in order
  status      status once the list is used up (default 200; handshakes
              get 200 unless "handshake" says otherwise)
  delay       seconds to wait before answering
  delays      list of delays for the next requests, like statuses
  blackhole   true: accept the request and never answer
  headers     extra response headers
  body        response body (default "ok")
  body_b64    true: also log the request body's bytes exactly, in base64

Each logged request also says how many requests to its path were being
answered when it arrived, itself included ("active"): the most a sender had
in flight there at once.
"""
import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

lock = threading.Lock()
used = {}  # path -> how many scripted statuses were used
active = {}  # path -> requests being answered now


def load_script(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        url = urlsplit(self.path)
        script = load_script(self.server.script)
        conf = dict(script)
        conf.update(script.get("paths", {}).get(url.path, {}))

        with lock:
            active[url.path] = active.get(url.path, 0) + 1
            now_active = active[url.path]
        try:
            self.answer(raw, url, conf, now_active)
        finally:
            with lock:
                active[url.path] -= 1

    def answer(self, raw, url, conf, now_active):
        body = conf.get("body", "ok")
        status = conf.get("status", 200)
        delay = conf.get("delay", 0)
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("type") == "url_verification":
            how = conf.get("handshake", "raw")
            challenge = event.get("challenge", "")
            status = 200
            if how == "quoted":
                body = json.dumps(challenge)
            elif how == "json":
                body = json.dumps({"challenge": challenge})
            elif how == "wrong":
                body = "not-the-challenge"
            elif how.startswith("status:"):
                status = int(how.split(":", 1)[1])
            else:
                body = challenge
        else:
            with lock:
                n = used.get(url.path, 0)
                used[url.path] = n + 1
            if n < len(conf.get("statuses", [])):
                status = conf["statuses"][n]
            if n < len(conf.get("delays", [])):
                delay = conf["delays"][n]

        entry = {
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": raw.decode("utf-8", "replace"),
            "time": time.time(),
            "status": status,
            "client_port": self.client_address[1],
            "active": now_active,
        }
        if conf.get("body_b64"):
            entry["body_b64"] = base64.b64encode(raw).decode("ascii")
        with lock:
            with open(self.server.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

        if conf.get("blackhole"):
            time.sleep(3600)
            return
        if delay:
            time.sleep(float(delay))
        data = body.encode()
        self.send_response(status)
        for k, v in conf.get("headers", {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--script", required=True)
    args = p.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.log = args.log
    server.script = args.script
    server.serve_forever()


if __name__ == "__main__":
    main()
