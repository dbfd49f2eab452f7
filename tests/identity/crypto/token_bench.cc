// Token throughput: what one validation costs before HTTP. Run by hand:
//   build/<dir>/tests/identity/crypto/identity_crypto_bench
// Numbers are only comparable within one run on this shared machine.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>

#include "base/clock.h"
#include "base/random.h"
#include "identity/crypto/password.h"
#include "identity/crypto/token.h"
#include "temp_dir.h"

namespace concord::identity {
namespace {

struct Fixture {
  Fixture() {
    Result<std::unique_ptr<KeyRepository>> r = KeyRepository::open(tmp.sub("keys"), 3);
    if (!r) std::abort();
    keys = std::move(*r);
    codec = std::make_unique<TokenCodec>(keys, clock);
    // A full repository: primary, staged, one secondary.
    if (!keys->rotate()) std::abort();
    old_token = codec->issue(payload());  // made with the current primary...
    if (!keys->rotate()) std::abort();    // ...which is now the secondary, tried last
    token = codec->issue(payload());
  }
  TokenPayload payload() const {
    TokenPayload p;
    p.user_id = new_hex_id();
    p.methods = {"password"};
    p.scope = ScopeKind::kProject;
    p.scope_id = new_hex_id();
    p.issued_at = clock.now();
    p.expires_at = clock.now() + std::chrono::hours(1);
    p.audit_ids = {new_audit_id()};
    return p;
  }
  testing::TempDir tmp;
  FakeClock clock;
  std::shared_ptr<KeyRepository> keys;
  std::unique_ptr<TokenCodec> codec;
  std::string token, old_token;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_OpenPrimary(benchmark::State& state) {
  Fixture& f = fixture();
  for (auto _ : state) {
    Result<TokenPayload> p = f.codec->open(f.token);
    if (!p) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_OpenPrimary)->Threads(1)->Threads(2);

void BM_OpenSecondary(benchmark::State& state) {
  Fixture& f = fixture();
  for (auto _ : state) {
    Result<TokenPayload> p = f.codec->open(f.old_token);
    if (!p) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_OpenSecondary);

void BM_OpenForeign(benchmark::State& state) {
  Fixture& f = fixture();
  testing::TempDir tmp;
  auto other = KeyRepository::open(tmp.sub("k"), 3);
  if (!other) std::abort();
  const std::string foreign =
      TokenCodec(std::shared_ptr<KeyRepository>(std::move(*other)), f.clock).issue(f.payload());
  for (auto _ : state) benchmark::DoNotOptimize(f.codec->open(foreign));
}
BENCHMARK(BM_OpenForeign);

void BM_Issue(benchmark::State& state) {
  Fixture& f = fixture();
  const TokenPayload p = f.payload();
  for (auto _ : state) benchmark::DoNotOptimize(f.codec->issue(p));
}
BENCHMARK(BM_Issue);

void BM_DecodePayload(benchmark::State& state) {
  const std::string bytes = encode_payload(fixture().payload());
  for (auto _ : state) benchmark::DoNotOptimize(decode_payload(bytes));
}
BENCHMARK(BM_DecodePayload);

void BM_VerifyPasswordDefaultParams(benchmark::State& state) {
  const std::string hash = *hash_password("correct horse battery staple");
  for (auto _ : state)
    benchmark::DoNotOptimize(verify_password("correct horse battery staple", hash));
}
BENCHMARK(BM_VerifyPasswordDefaultParams)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace concord::identity

BENCHMARK_MAIN();
