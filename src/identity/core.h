#pragma once
// The identity engine behind IdentityService and its HTTP API: token issue and validation,
// the write path (transaction + change records + revocation events + cache invalidation), and
// the renderers shared by issue and validation. Internal to src/identity.
//
// Thread-safety: all members are safe to call concurrently; mutable state lives in the
// Directory, RevocationIndex and Lockout, each with its own lock.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/result.h"
#include "identity/auth_context.h"
#include "identity/auth_request.h"
#include "identity/cache.h"
#include "identity/crypto/token.h"
#include "identity/identity_service.h"
#include "identity/lockout.h"
#include "identity/model.h"
#include "identity/revocation.h"
#include "store/store.h"

namespace concord::identity {

// What one write transaction did, applied to the caches once it has committed. Reset on every
// attempt because the store may run the transaction function more than once.
class WriteSet {
 public:
  // Records a change in the feed (inside the transaction) and remembers it.
  [[nodiscard]] Status change(store::Tx& tx, std::string_view kind, std::string_view id,
                              std::string_view op, std::string_view project_id = {});
  // Persists a revocation event and remembers it.
  [[nodiscard]] Status revoke(store::Tx& tx, RevocationKind kind, std::string_view value,
                              SystemTime now);

  std::vector<std::pair<std::string, std::string>> changes;  // kind, id
  std::vector<RevocationEvent> revocations;
};

class Core {
 public:
  Core(store::Store& store, const Clock& clock, IdentityOptions options,
       std::shared_ptr<KeyRepository> keys);

  store::Store& store;
  const Clock& clock;
  const IdentityOptions options;
  std::shared_ptr<KeyRepository> keys;
  TokenCodec codec;
  Directory dir;
  RevocationIndex revocations;
  Lockout lockout;

  // --- tokens ---
  // Opens and fully validates a token; kUnauthenticated with the reason otherwise.
  Result<AuthContext> validate(std::string_view token);
  // Derives the caller from a decoded payload and current data (the one resolver used by issue
  // and validation, so both render the same body).
  Result<AuthContext> resolve(const TokenPayload& payload);

  struct Issued {
    std::string token;
    AuthContext context;
  };
  // POST /v3/auth/tokens after parsing: authenticates every method, picks the scope, issues.
  Result<Issued> authenticate_request(const AuthRequest& request);

  // The token body ({"token": {...}}, JSON text) for a context; with the catalog unless
  // `include_catalog` is false. Issue and validation both use it, so they answer alike.
  Result<std::string> token_body(const AuthContext& ctx, bool include_catalog);
  // The catalog for a context as a JSON array (endpoint URLs with $(project_id)s
  // substituted; such endpoints are left out when the context has no project). Rendered once
  // per catalog version and project.
  Result<std::string> catalog_text(const AuthContext& ctx);

  // --- writes ---
  // Runs fn in one store transaction; once committed, applies the WriteSet to the caches and
  // the revocation index.
  [[nodiscard]] Status write(const std::function<Status(store::Tx&, WriteSet&)>& fn);
  // A read-only transaction.
  [[nodiscard]] Status read(const std::function<Status(store::Tx&)>& fn);
  void apply(const WriteSet& ws);

  // Revocation events for `kind/value` created by writes on other replicas (feed thread).
  [[nodiscard]] Status load_revocation(std::string_view event_id);
  [[nodiscard]] Status load_all_revocations();
  [[nodiscard]] Status prune_revocations();

  // Hashes a secret (user password, application credential secret) with the configured cost.
  Result<std::string> hash_secret(std::string_view secret) const;
  // Constant-work rejection for unknown users: verifies against a throwaway hash.
  void burn_verification(std::string_view password) const;

  int64_t now_us() const { return to_micros(clock.now()); }

 private:
  Result<std::string> password_user(const PasswordMethod& m);  // -> user id
  Result<std::shared_ptr<const AppCred>> app_cred_for(const AppCredMethod& m);
  Result<TokenPayload> scope_payload(const AuthRequest& r, TokenPayload p,
                                     const std::string& default_project_id);
  std::string dummy_hash_;
};

// HTTP-facing error for a Code (identity's table).
int http_status(Code code);

}  // namespace concord::identity
