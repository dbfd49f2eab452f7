-- One Open Inference Protocol v2 binary-tensor infer request, for bench/inference/serving.py.
-- The URL is wrk's; everything else comes from the environment so every row sends the same
-- request:
--   BENCH_BODY_FILE   the request body (JSON header then raw FP32 bytes), written by serving.py
--   BENCH_HEADER_LEN  Inference-Header-Content-Length (bytes of the JSON header)
--   BENCH_TOKEN       X-Auth-Token; empty for the replica called directly (no auth there)
-- done() prints one machine-readable line, "BENCH_RESULT {json}"; latencies in microseconds.
local path = os.getenv("BENCH_BODY_FILE")
if path == nil or path == "" then
  error("BENCH_BODY_FILE is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
local hlen = os.getenv("BENCH_HEADER_LEN")
if hlen == nil or hlen == "" then
  error("BENCH_HEADER_LEN is not set")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = hlen
wrk.headers["Accept"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["X-Auth-Token"] = token
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
