-- (c) Password authentication: POST /v3/auth/tokens, project scoped. Each request runs
-- the server's password hash check, so this case measures the hash cost as much as the API.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

common.setup_headers()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
if wrk.body == nil or wrk.body == "" then
  error("BENCH_BODY is not set")
end

done = common.done
