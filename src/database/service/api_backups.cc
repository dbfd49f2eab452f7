// Trove API: backups and restore into a new instance (stage 2; see docs/design/database.md,
// "Backups and restore").
#include "database/service/api_internal.h"

namespace concord::database::service {

void DatabaseService::Impl::add_backup_routes() {}

Status DatabaseService::Impl::parse_create_restore(const Call& c, const Json& in,
                                                   InstanceRow& inst) {
  (void)c;
  (void)inst;
  if (auto u = in.find("restorePoint"); u != in.end() && !u->is_null()) {
    return fail(bad("'restorePoint' is not supported by this cloud yet."));
  }
  return ok();
}

Status DatabaseService::Impl::add_backup_state(store::Tx& tx, const InstanceRow& inst,
                                               engine::DesiredState& st) {
  (void)tx;
  (void)inst;
  (void)st;
  return ok();
}

}  // namespace concord::database::service
