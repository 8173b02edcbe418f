#!/usr/bin/python3
"""Load check of a running dsmopt daemon (a script, not a unit test).

Usage: scripts/loadcheck.py BASE_URL TOKEN UPLOAD_ID_1 UPLOAD_ID_2 [--pollers 100] [--submissions 50] [--seconds 20]

Starts N concurrent clients polling GET /jobs/{id} and M concurrent submissions of POST
/processes/dsm-opt/execution, all against loopback, bounded in count and time, then prints the
p50/p95/p99 latency and the error count of each kind of request.
"""
import json, sys, threading, time, urllib.request, urllib.error

def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default

base, token, u1, u2 = sys.argv[1:5]
pollers, submissions, seconds = arg("--pollers", 100), arg("--submissions", 50), arg("--seconds", 20)
assert base.startswith("http://127.") or base.startswith("http://localhost"), "loopback only"
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read(); status = r.status
    except urllib.error.HTTPError as e:
        data = e.read(); status = e.code
    except Exception as e:
        return None, time.perf_counter() - t, str(e)
    return status, time.perf_counter() - t, data

body = json.dumps({"name": "load", "images": [{"upload": u1}, {"upload": u2}], "preset": "default",
                   "parameters": {"roi": [400, 400, 200, 200], "resolution": 1.0, "orthos": False, "mosaic": False}}).encode()
status, _, data = call("POST", "/processes/dsm-opt/execution", body)
assert status == 201, (status, data)
job = json.loads(data)["jobID"]

results = {"poll": [], "submit": []}
errors = {"poll": 0, "submit": 0}
lock = threading.Lock()
deadline = time.time() + seconds

def poller():
    while time.time() < deadline:
        s, dt, _ = call("GET", "/jobs/" + job)
        with lock:
            results["poll"].append(dt)
            if s != 200: errors["poll"] += 1

def submitter():
    s, dt, _ = call("POST", "/processes/dsm-opt/execution", body)
    with lock:
        results["submit"].append(dt)
        if s != 201: errors["submit"] += 1

threads = [threading.Thread(target=poller) for _ in range(pollers)] + [threading.Thread(target=submitter) for _ in range(submissions)]
for t in threads: t.start()
for t in threads: t.join()

def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))] * 1000 if v else float("nan")

for kind in ("poll", "submit"):
    v = results[kind]
    print(f"{kind}: {len(v)} requests, errors {errors[kind]}, p50 {pct(v, 50):.1f} ms, p95 {pct(v, 95):.1f} ms, p99 {pct(v, 99):.1f} ms")
