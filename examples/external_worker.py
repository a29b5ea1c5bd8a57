#!/usr/bin/env python3
"""An external worker for nagare in plain Python (standard library only).

Serves the connector `pdf.render`, declared in the config file as
`connectors: { pdf: { type: external, operations: [render] } }`.
Run: NAGARE_URL=http://127.0.0.1:8080 NAGARE_TOKEN=demo-worker python3 examples/external_worker.py
"""
import json, os, urllib.error, urllib.request

URL = os.environ.get("NAGARE_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("NAGARE_TOKEN", "demo-worker")


def post(path, body):
    req = urllib.request.Request(URL + path, json.dumps(body).encode(), method="POST", headers={
        "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=90) as resp:
        return json.load(resp)


def render(job):
    # A real worker calls the PDF service here, with job["idempotency_key"].
    return {"url": "https://files.example/pdf/%s.pdf" % job["input"]["title"]}


while True:
    for job in post("/api/v1/jobs/activate", {"connector": "pdf.render", "max_jobs": 10, "lease": "1m", "wait": 30}):
        print("job", job["id"], "attempt", job["attempt"], job["input"], flush=True)
        try:
            try:
                inst = post("/api/v1/jobs/%s/complete" % job["id"], {"output": render(job)})
            except (KeyError, TypeError) as e:  # bad input: retrying will not help
                inst = post("/api/v1/jobs/%s/fail" % job["id"], {"message": repr(e), "retryable": False})
            print("  instance", inst["id"], "is", inst["status"], flush=True)
        except urllib.error.HTTPError as e:  # 409: the lease ran out and another worker has it
            print("  refused:", e.code, json.load(e)["message"], flush=True)
