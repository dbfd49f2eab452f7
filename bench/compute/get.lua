-- One GET with an admin token, for the compute API scale benchmark (api_scale.py). The path is
-- wrk's URL; settings come from the environment so every case sends the same headers:
--   BENCH_TOKEN         the admin project-scoped token (X-Auth-Token)
--   BENCH_MICROVERSION  compute microversion (both Nova headers); empty for non-compute paths
-- done() prints one machine-readable line, "BENCH_RESULT {json}"; latencies in microseconds.
local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
wrk.method = "GET"
wrk.headers["Accept"] = "application/json"
wrk.headers["X-Auth-Token"] = token
local mv = os.getenv("BENCH_MICROVERSION")
if mv ~= nil and mv ~= "" then
  wrk.headers["X-OpenStack-Nova-API-Version"] = mv
  wrk.headers["OpenStack-API-Version"] = "compute " .. mv
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
