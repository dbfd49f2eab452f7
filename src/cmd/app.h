#pragma once
// The wiring of the `concord` binary: builds the store, the services and the HTTP server
// from a Config and runs them. The only place that knows every capability; nothing else in
// src/ includes this. Kept out of main.cc so integration tests could build an App in-process.
#include <memory>
#include <string>

#include "base/result.h"
#include "config/config.h"

namespace concord::cmd {

// `concord migrate`: opens the store and applies every component's pending migrations.
[[nodiscard]] Status run_migrate(const config::Config& config);

// `concord bootstrap`: migrate, then create (idempotently) the admin user, project, roles,
// region and catalog; writes clouds.yaml and openrc into the data folder.
[[nodiscard]] Status run_bootstrap(const config::Config& config);

// `concord server` (bootstrap = false) and `concord all-in-one` (bootstrap = true): serve
// until SIGINT or SIGTERM, then stop gracefully.
[[nodiscard]] Status run_server(const config::Config& config, bool bootstrap);

// `concord agent`: a host agent against agent.server_url, until SIGINT or SIGTERM.
[[nodiscard]] Status run_agent(const config::Config& config);

// `concord agent-credential HOST`: prints HOST's agent credential (from data_dir/agent-key).
[[nodiscard]] Status run_agent_credential(const config::Config& config, const std::string& host);

// `concord token-rotate`: rotates the Fernet keys in the data folder.
[[nodiscard]] Status run_token_rotate(const config::Config& config);

}  // namespace concord::cmd
