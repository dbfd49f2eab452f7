-- (a) Token validation: GET /v3/auth/tokens, the token validating itself.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

common.setup_headers()
wrk.method = "GET"
wrk.headers["X-Auth-Token"] = common.token()
wrk.headers["X-Subject-Token"] = common.token()

done = common.done
