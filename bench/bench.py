"""privbucket's benchmark: wall time, calls and critical path of up / status / down.

Run by scripts/bench.sh (which builds the release binary and starts the emulator). A latency
proxy on 127.0.0.1 sits between the binary and the emulator, adds a fixed delay to every call
(standing in for the round trip to AWS) and logs when each call started and ended. The
critical path is the longest chain of calls of a run that did not overlap (interval
scheduling): the least number of round trips any run could need, given the calls it made.
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops concurrent connects, which then wait a second for the
    # TCP retransmit: the proxy must not be the bottleneck it measures.
    request_queue_size = 256
    daemon_threads = True


LOG = []
LOG_LOCK = threading.Lock()


def make_handler(upstream_port, latency):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            start = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            time.sleep(latency)
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            action = self.path
            if body.startswith(b"Action="):
                action = body.split(b"&")[0][7:].decode()
            with LOG_LOCK:
                LOG.append((start, time.monotonic(), action, self.command, resp.status, body))

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Proxy


# What each run does, in order: `up` on nothing, `up` again on the complete stack, `status`,
# `down`; then a stack with a KMS key of its own, made and removed (how much deeper the key
# makes `up`: #32 wants at most one round trip).
COMMANDS = ("up", "up (complete)", "status", "down", "up --kms-key new", "down (key)")
ARGS = {
    "up": ["up"],
    "up (complete)": ["up"],
    "status": ["status"],
    "down": ["down", "--yes"],
    "up --kms-key new": ["up", "--kms-key", "new"],
    "down (key)": ["down", "--yes"],
}


def critical_path(calls):
    """Longest chain of calls that did not overlap: greedy by end time."""
    count, last_end = 0, float("-inf")
    for start, end, *_ in sorted(calls, key=lambda c: c[1]):
        if start >= last_end:
            count, last_end = count + 1, end
    return count


def trips(n):
    return f"{n:.0f} round trip" + ("" if round(n) == 1 else "s")


def post(url, body):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=120).read()


def reset(emulator):
    """A fresh emulator, warmed: moto builds each service's backend on its first call after a
    reset (IAM loads every AWS managed policy, about a second here), a cost real AWS does not
    have. One read per service, straight to the emulator and not timed, pays it before both
    modes' runs alike."""
    post(emulator + "/moto-api/reset", "{}")
    post(emulator + "/moto-api/config", '{"lambda":{"use_docker":false}}')
    # In a process of its own: boto3 loaded here would count in the peak memory of every
    # process this one starts (a fork's pages count until its exec).
    subprocess.run([sys.executable, "-c", WARM_UP, emulator], check=True)


WARM_UP = """
import sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing",
          aws_secret_access_key="testing")
boto3.client("sts", **kw).get_caller_identity()
boto3.client("ec2", **kw).describe_vpcs()
boto3.client("iam", **kw).list_roles()
boto3.client("s3", **kw).list_buckets()
boto3.client("lambda", **kw).list_functions()
"""


def run(binary, args, env):
    """Runs the binary; returns (wall seconds, peak RSS in KiB, exit code)."""
    start = time.monotonic()
    proc = subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"privbucket {' '.join(args)} exited {code}: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss, code


# The model's windows for `--model`, in ms: AWS's typical durations with the long ones scaled
# down (a VPC function's Pending is often a minute; Lambda releases ENIs minutes after the
# function leaves the VPC), so that one run takes two minutes, not twenty.
MODEL = {
    "ec2": 1000,        # EC2 eventual consistency after a create
    "iam": 8000,        # a new role not yet usable by Lambda
    "lambda-404": 1000, # GetFunction 404 right after CreateFunction
    "pending": 30000,   # a new function Pending (the uploader: while Lambda makes its ENIs)
    "s3-new": 1000,     # a new bucket's settings answering NoSuchBucket
    "update": 3000,     # LastUpdateStatus InProgress after an update
    "endpoint": 2000,   # a new Gateway endpoint pending
    "enis": 60000,      # Lambda releasing ENIs after the uploader leaves the VPC
}
MODEL_LATENCY_MS = 100


def model_runs(a, base_env, upstream_port):
    """`up` and `down` through the AWS model: how long after the uploader turns Active `up`
    ends, and how long after Lambda releases the last ENI `down` ends. The events' times come
    from the calls that start them (the model's clocks start when the emulator answers):
    Active = the uploader's CreateFunction answered + `pending`; released = the uploader's
    VPC detach answered + `enis`."""
    rows = []
    for _ in range(a.runs):
        reset(a.emulator)
        model = subprocess.Popen(
            [a.model_proxy, str(upstream_port), *[f"{k}={v}" for k, v in MODEL.items()]],
            stdout=subprocess.PIPE, text=True)
        try:
            model_port = int(model.stdout.readline().strip().rsplit(":", 1)[1])
            server = Server(("127.0.0.1", 0), make_handler(model_port, MODEL_LATENCY_MS / 1000))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            env = dict(base_env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}")
            row = {}
            for command in ("up", "down"):
                with LOG_LOCK:
                    LOG.clear()
                t0 = time.monotonic()
                wall, _, _ = run(a.binary, [command] + (["--yes"] if command == "down" else []),
                                 env)
                end = t0 + wall
                with LOG_LOCK:
                    calls = list(LOG)
                row[command] = (wall, len(calls))
                if command == "up":
                    made = [c for c in calls if c[3] == "POST" and c[2].endswith("/functions")
                            and c[4] == 201 and b'"privbucket-uploader"' in c[5]]
                    row["active"] = end - (made[-1][1] + MODEL["pending"] / 1000)
                    row["refused"] = sum(1 for c in calls if c[4] >= 400)
                else:
                    detach = [c for c in calls if c[3] == "PUT"
                              and c[2].endswith("/functions/privbucket-uploader/configuration")
                              and c[4] == 200]
                    row["released"] = end - (detach[-1][1] + MODEL["enis"] / 1000)
                    row["down_refused"] = sum(1 for c in calls if c[4] >= 400)
            rows.append(row)
            server.shutdown()
        finally:
            model.kill()
            model.wait()
    med = lambda f: statistics.median(f(r) for r in rows)
    windows = ", ".join(f"{k} {v / 1000:g} s" for k, v in MODEL.items())
    return [
        "## Under the model of AWS behaviour",
        "",
        f"`up` then `down` through the test proxy's model of AWS (`examples/model_proxy.rs`), "
        f"{MODEL_LATENCY_MS} ms per call, {a.runs} runs, medians. Windows: {windows}.",
        "",
        "| command | wall s | calls | refused by the model | ends after the AWS event |",
        "|---|---:|---:|---:|---|",
        f"| up | {med(lambda r: r['up'][0]):.1f} | {med(lambda r: r['up'][1]):.0f} | "
        f"{med(lambda r: r['refused']):.0f} | {med(lambda r: r['active']):.2f} s after the "
        f"uploader turns Active |",
        f"| down | {med(lambda r: r['down'][0]):.1f} | {med(lambda r: r['down'][1]):.0f} | "
        f"{med(lambda r: r['down_refused']):.0f} | {med(lambda r: r['released']):.2f} s after "
        f"Lambda releases the last ENI |",
        "",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latencies", default="0,100,300")
    ap.add_argument("--out", required=True)
    ap.add_argument("--trace", help="print every call of this command (up, status, down)")
    ap.add_argument("--model-proxy", help="examples/model_proxy binary: also run under the model")
    a = ap.parse_args()
    upstream_port = int(a.emulator.rsplit(":", 1)[1])
    work = tempfile.mkdtemp()
    home = os.path.join(work, "home")
    os.makedirs(home)
    base_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "PRIVBUCKET_STATE": os.path.join(work, "state.json"),
    }
    rows = []
    base = {}
    peak = 0
    for latency_ms in [int(x) for x in a.latencies.split(",")]:
        server = Server(("127.0.0.1", 0), make_handler(upstream_port, latency_ms / 1000))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = dict(base_env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}")
        for mode, extra in (("graph", []), ("sequential", ["--max-concurrency", "1"])):
            samples = {c: [] for c in COMMANDS}
            for _ in range(a.runs):
                reset(a.emulator)
                for command in COMMANDS:
                    args = ARGS[command] + (extra if command != "status" else [])
                    with LOG_LOCK:
                        LOG.clear()
                    wall, rss, _ = run(a.binary, args, env)
                    peak = max(peak, rss) if command == "up" else peak
                    with LOG_LOCK:
                        calls = list(LOG)
                    samples[command].append((wall, len(calls), critical_path(calls)))
                    if a.trace == command and mode == "graph":
                        t0 = min(c[0] for c in calls)
                        for c in sorted(calls, key=lambda c: c[0]):
                            print(f"  {c[0] - t0:6.3f} {c[1] - t0:6.3f} {c[2]}", file=sys.stderr)
            for command in COMMANDS:
                if mode == "sequential" and command == "status":
                    continue
                s = samples[command]
                wall = statistics.median(x[0] for x in s)
                calls = statistics.median(x[1] for x in s)
                crit = statistics.median(x[2] for x in s)
                ratio = wall / (crit * latency_ms / 1000) if latency_ms else None
                rows.append((command, mode, latency_ms, wall, calls, crit, ratio))
                base[(command, mode, latency_ms)] = wall
        server.shutdown()

    # Start-up cost: --version, and status without a state file.
    def median_ms(args, env):
        times = []
        for _ in range(21):
            t = time.monotonic()
            subprocess.run([a.binary, *args], env=env, stdout=subprocess.DEVNULL, check=True)
            times.append((time.monotonic() - t) * 1000)
        return statistics.median(times)

    env = dict(base_env, PRIVBUCKET_STATE=os.path.join(work, "absent.json"))
    version_ms = median_ms(["--version"], env)
    status_ms = median_ms(["status"], env)

    def get(command, mode, latency):
        return next(r for r in rows if r[:3] == (command, mode, latency))

    lines = [
        "# privbucket benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; emulator: moto server on 127.0.0.1; {a.runs} runs each, medians. "
        "Made by `scripts/bench.sh`.",
        "",
        "Latency is added by a proxy to every call (a stand-in for the round trip to AWS). "
        "*Critical path* is the longest chain of calls of a run that did not overlap, in round "
        "trips; *ratio* is wall time / (critical path x latency): the rest is the emulator's and "
        "the tool's own time.",
        "",
        "*Ratio net* takes out the emulator's own time (the same command's wall time at 0 ms). "
        "Before each run the emulator is reset and each service called once, untimed: moto "
        "builds a service's backend on its first call, which real AWS does not.",
        "",
        "| command | mode | latency ms | wall s | calls | critical path | ratio | ratio net |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for command, mode, latency, wall, calls, crit, ratio in rows:
        r = f"{ratio:.2f}" if ratio is not None else "-"
        zero = base.get((command, mode, 0))
        net = (wall - zero) / (crit * latency / 1000) if latency and zero is not None else None
        n = f"{net:.2f}" if net is not None else "-"
        lines.append(
            f"| {command} | {mode} | {latency} | {wall:.2f} | {calls:.0f} | {crit:.0f} | {r} | {n} |"
        )
    lines.append("")
    top = max(int(x) for x in a.latencies.split(","))
    up_g, up_s = get("up", "graph", top), get("up", "sequential", top)
    dn_g, dn_s = get("down", "graph", top), get("down", "sequential", top)
    st = get("status", "graph", top)
    upc = get("up (complete)", "graph", top)
    upk = get("up --kms-key new", "graph", top)
    lines += [
        f"Headline at {top} ms per call:",
        "",
        f"- `up`: {up_g[3]:.1f} s with the graph, {up_s[3]:.1f} s with `--max-concurrency 1`: "
        f"{up_s[3] / up_g[3]:.1f}x faster; wall / (critical path x latency) = {up_g[6]:.2f} "
        f"({(up_g[3] - base[('up', 'graph', 0)]) / (up_g[5] * top / 1000):.2f} without the "
        f"emulator's own {base[('up', 'graph', 0)]:.1f} s).",
        f"- `down`: {dn_g[3]:.1f} s vs {dn_s[3]:.1f} s: {dn_s[3] / dn_g[3]:.1f}x faster.",
        f"- `up` on a complete stack: {trips(upc[5])} deep ({upc[4]:.0f} calls), "
        f"{upc[3]:.2f} s.",
        f"- `status`: {trips(st[5])} deep ({st[4]:.0f} calls), {st[3]:.2f} s.",
        f"- `up --kms-key new`: {trips(upk[5])} deep ({upk[4]:.0f} calls), {upk[3]:.1f} s; "
        f"`up` alone {trips(up_g[5])}.",
        f"- Peak memory of `up`: {peak / 1024:.1f} MiB (max RSS).",
        f"- `privbucket --version`: {version_ms:.1f} ms; `status` without a state file: "
        f"{status_ms:.1f} ms.",
        "",
    ]
    if a.model_proxy:
        lines += model_runs(a, base_env, upstream_port)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
