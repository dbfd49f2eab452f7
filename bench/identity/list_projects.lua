-- (b) Project listing: GET /v3/projects with an admin token.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

common.setup_headers()
wrk.method = "GET"
wrk.headers["X-Auth-Token"] = common.token()

done = common.done
