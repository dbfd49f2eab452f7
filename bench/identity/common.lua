-- Shared by the identity wrk scripts. Settings come from the environment so that the
-- harness drives Keystone and Concord with byte-for-byte the same requests:
--   BENCH_TOKEN  the admin project-scoped token (X-Auth-Token; also X-Subject-Token
--                for validation)
--   BENCH_CLOSE  "1" sends Connection: close, so every request opens a new connection
--   BENCH_BODY   the JSON body for token issue
-- done() prints one machine-readable line, "BENCH_RESULT {json}", that the harness parses;
-- latencies are in microseconds.

local M = {}

function M.setup_headers()
  wrk.headers["Accept"] = "application/json"
  if os.getenv("BENCH_CLOSE") == "1" then
    wrk.headers["Connection"] = "close"
  end
end

function M.token()
  local t = os.getenv("BENCH_TOKEN")
  if t == nil or t == "" then
    error("BENCH_TOKEN is not set")
  end
  return t
end

function M.done(summary, latency, requests)
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

return M
