// Hot-path throughput of the identity service, in process (no sockets): authenticate(), token
// validation and the project listing through the router. Run by hand; never a CI gate (the
// machine is shared). Compare runs side by side, e.g.
//   build/.../identity_bench --benchmark_repetitions=5 --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

// One prepared service shared by all benchmarks: an admin, a member of a project, 100
// projects, a catalog of five services.
struct World {
  World() {
    set_log_level("error");
    auto st = store::open_sqlite({.path = dir.path() + "/identity.db"});
    if (!st) std::abort();
    store = std::move(*st);
    auto m = migrations();
    if (!store->migrate(m)) std::abort();
    node = std::make_unique<Node>(*store, clock, test_options(dir.path()));
    auto boot = node->service->bootstrap({"admin-secret", "http://localhost:5000", ""});
    if (!boot) std::abort();
    for (const char* type : {"compute", "image", "network", "database"}) {
      if (!node->service->ensure_service_endpoint(type, type, "http://localhost/x")) std::abort();
    }
    admin = login("admin", "admin-secret", "admin");
    for (int i = 0; i < 100; ++i) {
      Json body = {{"project", {{"name", "p" + std::to_string(i)}}}};
      if (node->call(http::Method::kPost, "/v3/projects", dump_json(body), admin).status != 201) {
        std::abort();
      }
    }
    Json user = {{"user", {{"name", "member"}, {"password", "pw"}}}};
    std::string uid =
        node->call(http::Method::kPost, "/v3/users", dump_json(user), admin).body["user"]["id"];
    std::string pid =
        node->call(http::Method::kGet, "/v3/projects?name=p7", "", admin).body["projects"][0]["id"];
    node->call(http::Method::kPut,
               "/v3/projects/" + pid + "/users/" + uid + "/roles/" + boot->member_role_id, "",
               admin);
    member = login("member", "pw", "p7");
  }

  std::string login(const std::string& user, const std::string& pw, const std::string& project) {
    Json body = {
        {"auth",
         {{"identity",
           {{"methods", {"password"}},
            {"password",
             {{"user", {{"name", user}, {"domain", {{"id", "default"}}}, {"password", pw}}}}}}},
          {"scope", {{"project", {{"name", project}, {"domain", {{"id", "default"}}}}}}}}}};
    Reply r = node->call(http::Method::kPost, "/v3/auth/tokens", dump_json(body));
    if (r.status != 201) std::abort();
    return r.header("x-subject-token");
  }

  TempDir dir;
  FakeClock clock;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<Node> node;
  std::string admin;
  std::string member;
};

// What the server would do for one request, without parsing the reply (unlike Node::call).
int dispatch(const World& w, http::Method method, const std::string& target,
             const std::string& token, const std::string& subject = "") {
  http::Request req;
  req.method = method;
  req.target = "/identity" + target;
  req.base_url = "http://localhost:5000";
  req.headers.push_back({"x-auth-token", token});
  if (!subject.empty()) req.headers.push_back({"x-subject-token", subject});
  std::string route;
  http::Response r = w.node->router.dispatch(req, route);
  benchmark::DoNotOptimize(r.body.data());
  return r.status;
}

World& world() {
  static World* w = new World();
  return *w;
}

void BM_Authenticate(benchmark::State& state) {
  World& w = world();
  for (auto _ : state) {
    auto ctx = w.node->service->authenticate(w.member);
    if (!ctx) state.SkipWithError("authenticate failed");
    benchmark::DoNotOptimize(ctx);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Authenticate)->Threads(1)->Threads(2);

void BM_ValidateTokenHttp(benchmark::State& state) {
  World& w = world();
  for (auto _ : state) {
    if (dispatch(w, http::Method::kGet, "/v3/auth/tokens", w.member, w.member) != 200) {
      state.SkipWithError("validation failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValidateTokenHttp)->Threads(1)->Threads(2);

void BM_ListProjectsHttp(benchmark::State& state) {
  World& w = world();
  for (auto _ : state) {
    if (dispatch(w, http::Method::kGet, "/v3/projects", w.admin) != 200) {
      state.SkipWithError("list failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ListProjectsHttp)->Threads(1)->Threads(2);

void BM_GetProjectHttp(benchmark::State& state) {
  World& w = world();
  std::string pid =
      w.node->call(http::Method::kGet, "/v3/auth/projects", "", w.member).body["projects"][0]["id"];
  for (auto _ : state) {
    if (dispatch(w, http::Method::kGet, "/v3/projects/" + pid, w.member) != 200) {
      state.SkipWithError("get failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetProjectHttp)->Threads(1);

}  // namespace
}  // namespace concord::identity::testing

BENCHMARK_MAIN();
