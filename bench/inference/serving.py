"""Inference serving benchmark (issue 5): serving overhead against the raw runtime, and the
dynamic batching gain. Driven by bench/inference/serving.sh (which installs wrk, builds what is
missing and sets up the clean-up trap); run it through that script.

Part 1, overhead at batch B (default 32), C concurrent clients (default 4), D seconds, N repeats,
rows interleaved run by run:
  raw             inference_raw_bench: OpenCV runtime in-process, C threads, same model/batch
  replica direct  `concord inference-replica` alone (no gateway, no auth), wrk with keep-alive
  endpoint        all-in-one gateway -> replica (1 replica, max_batch_size 32 so a request of 32
                  runs unbatched), wrk with keep-alive and X-Auth-Token
wrk sends binary tensors (JSON header + raw FP32 of real Fashion-MNIST test images).

Part 2, batching gain: batch-1 requests at 1, 8 and 64 concurrent clients against two endpoints
of the same server, batching on (max_batch_size 32, max_queue_delay_us 2000) and off
(max_batch_size 1), and against two replicas with the same settings called directly (to tell
the gateway's share from the batcher's), all interleaved run by run; the replica's /v2/stats
gives the mean batch size actually run.

Standard library only (Debian's /usr/bin/python3); reuses bench/compute/common.py (HTTP client,
Concord launcher wrapper, statistics helpers). Exits 0 whatever the figures; non-zero only when
something failed to run.
"""
import argparse
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "compute"))
import common  # noqa: E402
from common import BenchError, fmt, log, mmm  # noqa: E402

MODEL = os.path.join(REPO, "tests", "fixtures", "models", "fashion_mnist_cnn.onnx")
DATASET = os.environ.get("CONCORD_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
MODEL_NAME = "fashion"
LUA = os.path.join(HERE, "serving_infer.lua")
READY_TIMEOUT = 240.0


def parse_args():
    p = argparse.ArgumentParser(
        prog="bench/inference/serving.sh",
        description="Serving overhead against the raw OpenCV runtime, and dynamic batching gain.")
    p.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    p.add_argument("--duration", type=int, default=6, help="seconds per run (default 6)")
    p.add_argument("--batch", type=int, default=32, help="images per request, part 1 (32)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="clients (raw: threads) in part 1 (default 4)")
    p.add_argument("--clients", default="1,8,64",
                   help="concurrent clients of part 2, comma-separated (default 1,8,64)")
    p.add_argument("--only", default="overhead,batching",
                   help="parts to run: overhead, batching (default both)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="max_queue_delay_us of the batching-on endpoint (default 2000)")
    p.add_argument("--vcpus", type=int, default=os.cpu_count() or 1,
                   help="vcpus of each endpoint (its replica's CPU quota; default: all cores)")
    p.add_argument("--server-threads", type=int, default=0,
                   help="--server.threads of all-in-one (default: Concord's own default)")
    p.add_argument("--concord-bin", default=os.environ.get("CONCORD_BIN"))
    p.add_argument("--raw-bin", default=os.environ.get("CONCORD_RAW_BENCH_BIN"))
    p.add_argument("--workdir", help="scratch directory (serving.sh makes and removes it)")
    p.add_argument("--results", help="markdown file the table is written to")
    a = p.parse_args()
    a.parts = {x.strip() for x in a.only.split(",") if x.strip()}
    unknown = a.parts - {"overhead", "batching"}
    if unknown:
        p.error("unknown part(s) in --only: %s" % ", ".join(sorted(unknown)))
    a.client_list = [int(x) for x in a.clients.split(",") if x.strip()]
    if a.repeats < 1 or a.duration < 1 or a.batch < 1 or a.concurrency < 1:
        p.error("--repeats, --duration, --batch and --concurrency must be at least 1")
    if not a.workdir or not a.concord_bin:
        p.error("--workdir and --concord-bin (or $CONCORD_BIN) are required; use serving.sh")
    if "overhead" in a.parts and not a.raw_bin:
        p.error("--raw-bin (or $CONCORD_RAW_BENCH_BIN) is required for the overhead part")
    return a


# ---- inputs ------------------------------------------------------------------------------

def load_pixels(count):
    """The first `count` Fashion-MNIST test images as little-endian FP32 bytes (pixel / 255)."""
    path = os.path.join(DATASET, "t10k-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        raise BenchError("%s is missing: install dataset-fashion-mnist "
                         "(scripts/install-deps.sh --test)" % path)
    with gzip.open(path) as f:
        raw = f.read(16 + count * 784)
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x803 or rows != 28 or cols != 28 or n < count:
        raise BenchError("%s is not the Fashion-MNIST test images" % path)
    return struct.pack("<%df" % (count * 784), *(b / 255.0 for b in raw[16:16 + count * 784]))


def write_body(work, batch, pixels):
    """Writes one binary-tensor request body; returns (path, header length, body bytes)."""
    rows = pixels[:batch * 784 * 4]
    header = json.dumps({
        "inputs": [{"name": "input", "shape": [batch, 1, 28, 28], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(rows)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    body = header + rows
    path = os.path.join(work, "body-b%d.bin" % batch)
    with open(path, "wb") as f:
        f.write(body)
    return path, len(header), body


def check_infer(base_url, path, token, body, hlen, batch):
    """One request through Python before wrk runs: proves the URL, auth and body are right (a
    benchmark of 401s would be fast and worthless)."""
    api = common.Http(base_url, token, timeout=60.0)
    st, rh, out = api.request("POST", path, body,
                              {"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(hlen)}, raw=True)
    api.close()
    if st != 200:
        raise BenchError("POST %s%s answered %d: %s" % (base_url, path, st,
                                                        out[:300].decode(errors="replace")))
    n = int(rh.get("inference-header-content-length", "0"))
    head = json.loads(out[:n]) if n else json.loads(out)
    shape = head["outputs"][0]["shape"]
    if shape != [batch, 10]:
        raise BenchError("POST %s answered outputs shape %s, expected [%d, 10]"
                         % (path, shape, batch))


# ---- load generators ---------------------------------------------------------------------

def run_wrk(url, body_path, hlen, token, clients, duration):
    env = dict(os.environ, BENCH_BODY_FILE=body_path, BENCH_HEADER_LEN=str(hlen),
               BENCH_TOKEN=token or "")
    threads = max(1, min(2, clients))
    cmd = ["wrk", "-t%d" % threads, "-c%d" % clients, "-d%ds" % duration, "--timeout", "30s",
           "-s", LUA, url]
    load = common.loadavg()
    r = common.run(cmd, timeout=duration + 120, env=env)
    out = r.stdout.decode(errors="replace")
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError("wrk printed no BENCH_RESULT:\n%s\n%s"
                         % (out[-800:], r.stderr.decode(errors="replace")[-800:]))
    res = json.loads(line[len("BENCH_RESULT "):])
    e = res["errors"]
    errors = e["connect"] + e["read"] + e["write"] + e["status"] + e["timeout"]
    ok = res["requests"] - e["status"]
    if ok <= 0:
        raise BenchError("wrk got no successful response from %s: %s" % (url, res))
    secs = res["duration_us"] / 1e6
    return {"req_s": ok / secs, "p50_ms": res["latency_us"]["p50"] / 1000.0,
            "p99_ms": res["latency_us"]["p99"] / 1000.0, "errors": errors, "load": load}


def run_raw(raw_bin, batch, threads, duration):
    load = common.loadavg()
    r = common.run([raw_bin, "--model", MODEL, "--batch", str(batch), "--threads", str(threads),
                    "--duration", str(duration)], timeout=duration + 300)
    out = r.stdout.decode(errors="replace")
    line = next((x for x in out.splitlines() if x.startswith("RAW_RESULT ")), None)
    if line is None:
        raise BenchError("inference_raw_bench printed no RAW_RESULT: %s" % out[-500:])
    res = json.loads(line[len("RAW_RESULT "):])
    return {"req_s": res["calls"] / res["duration_s"], "p50_ms": res["latency_us"]["p50"] / 1e3,
            "p99_ms": res["latency_us"]["p99"] / 1e3, "errors": res["errors"], "load": load}


# ---- processes ---------------------------------------------------------------------------

class Replica:
    """`concord inference-replica` alone on port 0, in its own session (pgid recorded for the
    shell trap)."""

    def __init__(self, concord_bin, work, max_batch, delay_us, tag):
        self.work = work
        self.port_file = os.path.join(work, "replica-%s.port" % tag)
        self.log_path = os.path.join(work, "replica-%s.log" % tag)
        self.cmd = [concord_bin, "inference-replica", "--model", MODEL, "--name", MODEL_NAME,
                    "--port-file", self.port_file, "--max-batch-size", str(max_batch),
                    "--max-queue-delay-us", str(delay_us)]
        self.proc = None

    def start(self, timeout=120):
        with open(self.log_path, "ab") as log_f:
            self.proc = subprocess.Popen(self.cmd, stdout=log_f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(self.work, "pgids"), "a") as f:
            f.write("%d\n" % self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError("inference-replica exited with %d:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            try:
                with open(self.port_file) as f:
                    port = int(f.read().strip())
                break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise BenchError("inference-replica wrote no port within %d s:\n%s"
                                 % (timeout, self.log_tail()))
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % port
        return self

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def create_endpoint(srv, model_id, name, max_batch, delay_us, vcpus):
    api = srv.http()
    out, _ = api.expect(201, "POST", "/inference/v1/endpoints", {"endpoint": {
        "name": name, "model_id": model_id, "model_version": 1, "min_replicas": 1,
        "max_replicas": 1, "vcpus": vcpus, "memory_mb": 1024,
        "batching": {"max_batch_size": max_batch, "max_queue_delay_us": delay_us}}})
    api.close()
    return out["endpoint"]["id"]


def wait_ready(srv, eid):
    api = srv.http()
    deadline = time.monotonic() + READY_TIMEOUT
    ep = None
    while time.monotonic() < deadline:
        ep, _ = api.expect(200, "GET", "/inference/v1/endpoints/" + eid)
        ep = ep["endpoint"]
        ready = [r for r in ep.get("replicas", []) if r.get("status") == "ready"]
        if ep["status"] == "ready" and ready:
            api.close()
            return ep
        if ep["status"] == "error":
            raise BenchError("endpoint %s went to error: %s" % (eid, ep))
        time.sleep(0.5)
    raise BenchError("endpoint %s not ready after %.0f s: %s\n%s"
                     % (eid, READY_TIMEOUT, ep, srv.log_tail(40)))


def delete_endpoints(srv, ids, timeout=20.0):
    """Deletes the endpoints and waits until they are gone, so that the agent stops their replica
    processes (they outlive a stopped all-in-one otherwise). Best effort: kill_strays follows."""
    if not ids or not srv.alive():
        return
    api = srv.http(timeout=10.0)
    try:
        for eid in ids:
            api.request("DELETE", "/inference/v1/endpoints/" + eid)
        deadline = time.monotonic() + timeout
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            pending = [e for e in pending
                       if api.request("GET", "/inference/v1/endpoints/" + e)[0] != 404]
            if pending:
                time.sleep(0.5)
        if pending:
            log("warning: endpoints %s not gone after %.0f s" % (pending, timeout))
    except (OSError, BenchError) as e:
        log("warning: deleting endpoints failed: %s" % e)
    finally:
        api.close()


def kill_strays(work):
    """Kills replica processes the agent started from files under `work` and left running (a
    replica runs in its own session, out of reach of the shell trap's process groups)."""
    needle = os.fsencode(work.rstrip("/") + "/")
    for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"inference-replica" in cmd and needle in cmd:
            log("killing leftover replica %d" % pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def split_url(url):
    """(scheme://host:port, path) of an absolute URL."""
    i = url.index("/", url.index("//") + 2)
    return url[:i], url[i:]


def batch_counters(base, prefix, token):
    """(batches, inferences) so far from the replica's /v2/stats, or None when that route does
    not answer (the gateway may not proxy it)."""
    api = common.Http(base, token, timeout=10.0)
    try:
        st, _, out = api.request("GET", prefix + "/v2/stats")
    except (OSError, BenchError):
        return None
    finally:
        api.close()
    if st != 200 or not isinstance(out, dict):
        return None
    m = next((x for x in out.get("models", []) if x.get("name") == MODEL_NAME), None)
    if m is None:
        return None
    return m.get("batches", 0), m.get("inferences", 0)


def gateway_batch_counters(base, prefix):
    """(requests, sum of batch sizes) the gateway recorded for this endpoint so far, from the
    server's /metrics (concord_inference_batch_size, one observation per request: the size of
    the batch the request ran in, as the replica reports it). Their ratio is the batch size
    seen per request, which weighs large batches by their rows; None when absent."""
    eid = prefix.rstrip("/").rsplit("/", 1)[-1]
    api = common.Http(base, None, timeout=10.0)
    try:
        st, _, out = api.request("GET", "/metrics", raw=True)
    except (OSError, BenchError):
        return None
    finally:
        api.close()
    if st != 200:
        return None
    text = out.decode(errors="replace")
    total = count = None
    codes = {}
    for line in text.splitlines():
        prefix_codes = 'concord_inference_requests_total{endpoint="%s",code="' % eid
        if line.startswith(prefix_codes):
            codes[line[len(prefix_codes):].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        if line.startswith('concord_inference_batch_size_sum{endpoint="%s"}' % eid):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith('concord_inference_batch_size_count{endpoint="%s"}' % eid):
            count = float(line.rsplit(" ", 1)[1])
    if total is None or count is None:
        return None
    return count, total, codes


def ratio(a, b):
    return a / b if b else float("nan")


# ---- the table ---------------------------------------------------------------------------

def row_stats(runs):
    return {"req_s": mmm([r["req_s"] for r in runs]),
            "p50": mmm([r["p50_ms"] for r in runs])[1],
            "p99": mmm([r["p99_ms"] for r in runs])[1],
            "errors": sum(r["errors"] for r in runs),
            "load": ", ".join(r["load"].split()[0] for r in runs)}


def mmm_str(t, scale=1.0):
    return " / ".join(fmt(x * scale) for x in t)


def main():
    a = parse_args()
    work = a.workdir
    started = common.now_utc()
    lines = []
    machine = "%d cores, load average at start %s" % (os.cpu_count() or 0, common.loadavg())

    pixels = load_pixels(max(a.batch, 1))
    big_path, big_hlen, big_body = write_body(work, a.batch, pixels)
    one_path, one_hlen, one_body = write_body(work, 1, pixels)

    extra = ["--agent.drivers=container,inference"]
    if a.server_threads:
        extra.append("--server.threads=%d" % a.server_threads)
    srv = common.Concord(work, extra).start()
    replicas = []
    endpoints = []
    try:
        api = srv.http()
        out, _ = api.expect(201, "POST", "/inference/v1/models", {"name": MODEL_NAME})
        model_id = out["model"]["id"]
        with open(MODEL, "rb") as f:
            api.expect(201, "PUT", "/inference/v1/models/%s/versions/1" % model_id, f.read(),
                       {"Content-Type": "application/octet-stream"})
        api.close()
        ep_on = create_endpoint(srv, model_id, "bench-on", 32, a.queue_delay_us, a.vcpus)
        endpoints.append(ep_on)
        ep_off = None
        if "batching" in a.parts:
            ep_off = create_endpoint(srv, model_id, "bench-off", 1, a.queue_delay_us, a.vcpus)
            endpoints.append(ep_off)
        on = wait_ready(srv, ep_on)
        on_base, on_prefix = split_url(on["url"].rstrip("/"))
        infer = "/v2/models/%s/infer" % MODEL_NAME
        log("endpoint bench-on ready: %s" % on["url"])

        # ---- part 1 -----------------------------------------------------------------------
        if "overhead" in a.parts:
            replica = Replica(a.concord_bin, work, 32, a.queue_delay_us, "b%d" % a.batch).start()
            replicas.append(replica)
            check_infer(replica.url, infer, None, big_body, big_hlen, a.batch)
            check_infer(on_base, on_prefix + infer, srv.token, big_body, big_hlen, a.batch)
            runs = {"raw": [], "replica": [], "endpoint": []}
            for rep in range(a.repeats):
                log("overhead, repeat %d/%d" % (rep + 1, a.repeats))
                runs["raw"].append(run_raw(a.raw_bin, a.batch, a.concurrency, a.duration))
                runs["replica"].append(run_wrk(replica.url + infer, big_path, big_hlen, None,
                                               a.concurrency, a.duration))
                runs["endpoint"].append(run_wrk(on["url"].rstrip("/") + infer, big_path,
                                                big_hlen, srv.token, a.concurrency, a.duration))
            replica.stop()
            raw_med = row_stats(runs["raw"])["req_s"][1]
            lines += [
                "## Serving overhead against the raw runtime",
                "",
                "Batch %d per request (binary FP32 tensors of Fashion-MNIST test images), %d "
                "concurrent clients (raw: threads), %d s per run, %d repeat(s), rows interleaved."
                % (a.batch, a.concurrency, a.duration, a.repeats),
                "",
                "| row | images/s min / median / max | req/s median | p50 ms | p99 ms | errors "
                "| ratio to raw | load avg per run |",
                "|---|---|---|---|---|---|---|---|",
            ]
            names = {"raw": "raw OpenCV runtime (in-process)",
                     "replica": "replica direct (no gateway)",
                     "endpoint": "endpoint (gateway + replica)"}
            ratios = {}
            for key in ("raw", "replica", "endpoint"):
                s = row_stats(runs[key])
                ratios[key] = s["req_s"][1] / raw_med if raw_med else float("nan")
                lines.append("| %s | %s | %s | %s | %s | %d | %s | %s |" % (
                    names[key], mmm_str(s["req_s"], a.batch), fmt(s["req_s"][1]),
                    fmt(s["p50"]), fmt(s["p99"]),
                    s["errors"], fmt(ratios[key]), s["load"]))
            goal = "met" if ratios["endpoint"] >= 0.8 else "NOT met"
            lines += ["", "Goal (endpoint at least 80%% of raw throughput at batch %d): %s "
                      "(%.0f%%)." % (a.batch, goal, 100 * ratios["endpoint"]), ""]

        # ---- part 2 -----------------------------------------------------------------------
        if "batching" in a.parts:
            off = wait_ready(srv, ep_off)
            log("endpoint bench-off ready: %s" % off["url"])
            off_base, off_prefix = split_url(off["url"].rstrip("/"))
            # The same two configurations served by replicas called directly, so that a gain
            # lost in the gateway is told apart from one the batcher does not deliver.
            direct = {"on": Replica(a.concord_bin, work, 32, a.queue_delay_us, "on").start(),
                      "off": Replica(a.concord_bin, work, 1, a.queue_delay_us, "off").start()}
            replicas.extend(direct.values())
            targets = {
                ("endpoint", "on"): (on_base, on_prefix, srv.token),
                ("endpoint", "off"): (off_base, off_prefix, srv.token),
                ("direct", "on"): (direct["on"].url, "", None),
                ("direct", "off"): (direct["off"].url, "", None),
            }
            for base, prefix, token in targets.values():
                check_infer(base, prefix + infer, token, one_body, one_hlen, 1)
            runs = {(c, via, m): [] for c in a.client_list for via, m in targets}
            for rep in range(a.repeats):
                for c in a.client_list:
                    for via, m in targets:
                        base, prefix, token = targets[(via, m)]
                        log("batching %s via %s, %d clients, repeat %d/%d"
                            % (m, via, c, rep + 1, a.repeats))
                        before = batch_counters(base, prefix, token)
                        gw_before = (gateway_batch_counters(base, prefix)
                                     if via == "endpoint" else None)
                        r = run_wrk(base + prefix + infer, one_path, one_hlen, token, c,
                                    a.duration)
                        after = batch_counters(base, prefix, token)
                        gw_after = (gateway_batch_counters(base, prefix)
                                    if via == "endpoint" else None)
                        r["mean_batch"] = (
                            (after[1] - before[1]) / (after[0] - before[0])
                            if before and after and after[0] > before[0] else float("nan"))
                        if gw_before and gw_after:
                            # Failed requests by status, so that an errors column can be told
                            # apart (a replica's 503 queue full, the gateway's 503 no ready
                            # replica or in-flight limit, 502, 504).
                            failed = {k: v - gw_before[2].get(k, 0)
                                      for k, v in gw_after[2].items()
                                      if k != "200" and v - gw_before[2].get(k, 0) > 0}
                            if failed:
                                log("  gateway answered non-200: %s" % failed)
                        r["batch_per_request"] = (
                            (gw_after[1] - gw_before[1]) / (gw_after[0] - gw_before[0])
                            if gw_before and gw_after and gw_after[0] > gw_before[0]
                            else float("nan"))
                        runs[(c, via, m)].append(r)
            for rp in direct.values():
                rp.stop()
            lines += [
                "## Dynamic batching gain",
                "",
                "Batch-1 requests; on: max_batch_size 32, max_queue_delay_us %d; off: "
                "max_batch_size 1. Through the endpoint (gateway + replica, %s vcpus) and to a "
                "replica called directly (no gateway, no CPU quota). %d s per run, %d repeat(s), "
                "all four interleaved. Mean batch: rows per batch the replica ran during the "
                "run (its /v2/stats; n/a when the gateway does not expose it). Batch per "
                "request (endpoint rows): the mean size of the batch each request ran in, from "
                "the gateway's concord_inference_batch_size histogram (weighs a batch by its "
                "rows, so it is at least the mean batch)."
                % (a.queue_delay_us, a.vcpus, a.duration, a.repeats),
                "",
                "| clients | via | batching | req/s min / median / max | p50 ms | p99 ms "
                "| mean batch | batch per request | errors | load avg per run |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            gains = []
            for c in a.client_list:
                for via in ("endpoint", "direct"):
                    st = {}
                    for m in ("on", "off"):
                        rs = runs[(c, via, m)]
                        st[m] = row_stats(rs)
                        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
                            c, via, m, mmm_str(st[m]["req_s"]), fmt(st[m]["p50"]),
                            fmt(st[m]["p99"]), fmt(mmm([r["mean_batch"] for r in rs])[1]),
                            fmt(mmm([r["batch_per_request"] for r in rs])[1]),
                            st[m]["errors"], st[m]["load"]))
                    gains.append((c, via, ratio(st["on"]["req_s"][1], st["off"]["req_s"][1]),
                                  ratio(st["on"]["p99"], st["off"]["p99"])))
            lines += ["", "| clients | via | throughput on/off (medians) | p99 on/off |",
                      "|---|---|---|---|"]
            for c, via, g, p in gains:
                lines.append("| %d | %s | %sx | %sx |" % (c, via, fmt(g), fmt(p)))
            lines.append("")
    finally:
        for rp in replicas:
            rp.stop()
        delete_endpoints(srv, endpoints)
        srv.stop()
        kill_strays(work)

    head = [
        "# Inference serving benchmark, %s" % started,
        "",
        "Command: `%s`. Machine: %s. Concord: `%s`." % (
            os.environ.get("BENCH_COMMAND", "bench/inference/serving.sh"), machine,
            a.concord_bin),
        "The load generator (wrk) runs on the same cores as the server; the raw row has no "
        "client cost. Absolute figures move with the machine; read the ratios.",
        "",
    ]
    text = "\n".join(head + lines)
    print(text)
    if a.results:
        with open(a.results, "w") as f:
            f.write(text + "\n")
        log("wrote %s" % a.results)
    return 0


if __name__ == "__main__":
    # serving.sh's trap sends SIGTERM on Ctrl-C or failure: exit through the finally blocks so
    # the endpoints are deleted and the replicas stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except BenchError as e:
        log("failed: %s" % e)
        sys.exit(1)
