// The `concord` binary: one binary, many roles (see docs/architecture.md).
//
//   concord all-in-one   migrate, bootstrap and serve every API on one port (SQLite by default)
//   concord server       serve (the store must be migrated and bootstrapped)
//   concord bootstrap    create the admin user/project/roles and the catalog; idempotent
//   concord migrate      apply pending schema migrations
//   concord token-rotate rotate the Fernet token keys
//   concord agent        run a host agent: register this host, run the servers placed on it
//   concord agent-credential HOST
//                        print the credential a host's agent authenticates with
//   concord inference-replica --model FILE --name NAME ...
//                        serve one model over the Open Inference Protocol v2 (what an agent's
//                        inference driver runs for each endpoint replica; --help lists options)
//   concord config       print every option with its type, default, bounds and help
//   concord version
//
// Every configuration option is declared once (src/config/config.cc) and becomes a flag
// `--section.key=value` of the commands that use it; `--config FILE` reads an INI file
// first, flags win.
#include <malloc.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "cmd/app.h"
#include "config/config.h"
#include "inference/serving/replica.h"

#ifndef CONCORD_VERSION
#define CONCORD_VERSION "0.0.0"
#endif

namespace {

using concord::config::Config;

// Adds one flag per declared option to `cmd`; values land in `flags` when given.
void add_config_flags(CLI::App* cmd, std::string& config_file,
                      std::map<std::string, std::string>& flags) {
  cmd->add_option("--config", config_file, "INI configuration file (flags override it)");
  for (const auto& o : concord::config::options()) {
    std::string help = o.description + " [default: " + o.default_value + "]";
    cmd->add_option_function<std::string>(
        "--" + o.name, [&flags, name = o.name](const std::string& v) { flags[name] = v; }, help);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // argon2id allocates ~19 MiB per password check. glibc raises its mmap threshold after the
  // first such block is freed, so later ones come from the heap and stay resident: a fixed
  // threshold keeps large blocks mmapped and returned to the kernel when freed, and fewer
  // arenas keep the idle footprint small (docs/benchmarks.md: idle resident memory).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // A peer or a child that goes away mid-write is an EPIPE to handle where it happens, never a
  // reason for the whole server or agent to die.
  ::signal(SIGPIPE, SIG_IGN);
  mallopt(M_ARENA_MAX, 2);
  // The replica has its own options (replica.h), not the cloud's configuration: it is handed
  // everything on its command line by the agent's inference driver.
  if (argc >= 2 && std::string_view(argv[1]) == "inference-replica") {
    return concord::inference::serving::run_replica(
        std::vector<std::string>(argv + 2, argv + argc));
  }
  CLI::App app{"Concord: an open-source public cloud platform"};
  app.require_subcommand(1);
  std::string config_file;
  std::map<std::string, std::string> flags;

  auto* aio = app.add_subcommand("all-in-one", "Migrate, bootstrap and serve on one machine");
  auto* server = app.add_subcommand("server", "Serve the APIs");
  auto* bootstrap = app.add_subcommand("bootstrap", "Create the admin user, project and catalog");
  auto* migrate = app.add_subcommand("migrate", "Apply pending schema migrations");
  auto* rotate = app.add_subcommand("token-rotate", "Rotate the Fernet token keys");
  auto* agent = app.add_subcommand("agent", "Run a host agent (containers and VMs on this host)");
  auto* agent_cred =
      app.add_subcommand("agent-credential", "Print the credential of a host's agent");
  std::string agent_host;
  agent_cred->add_option("host", agent_host, "Host name the agent registers as")->required();
  auto* config_cmd = app.add_subcommand("config", "Print every configuration option");
  auto* version = app.add_subcommand("version", "Print the version");
  for (auto* cmd : {aio, server, bootstrap, migrate, rotate, agent, agent_cred, config_cmd}) {
    add_config_flags(cmd, config_file, flags);
  }

  CLI11_PARSE(app, argc, argv);

  if (version->parsed()) {
    std::printf("concord %s\n", CONCORD_VERSION);
    return 0;
  }

  Config config;
  if (!config_file.empty()) {
    if (auto s = config.load_file(config_file); !s) {
      std::fprintf(stderr, "concord: %s\n", s.error().message().c_str());
      return 2;
    }
  }
  for (const auto& [name, value] : flags) {
    if (auto s = config.set(name, value); !s) {
      std::fprintf(stderr, "concord: %s\n", s.error().message().c_str());
      return 2;
    }
  }
  if (config_cmd->parsed()) {
    std::printf("%s\n# in force:\n%s", Config::reference().c_str(), config.dump().c_str());
    return 0;
  }
  concord::set_log_level(config.str("log.level"));

  concord::Status result;
  if (aio->parsed()) {
    result = concord::cmd::run_server(config, /*bootstrap=*/true);
  } else if (server->parsed()) {
    result = concord::cmd::run_server(config, /*bootstrap=*/false);
  } else if (bootstrap->parsed()) {
    result = concord::cmd::run_bootstrap(config);
  } else if (migrate->parsed()) {
    result = concord::cmd::run_migrate(config);
  } else if (rotate->parsed()) {
    result = concord::cmd::run_token_rotate(config);
  } else if (agent->parsed()) {
    result = concord::cmd::run_agent(config);
  } else if (agent_cred->parsed()) {
    result = concord::cmd::run_agent_credential(config, agent_host);
  }
  if (!result) {
    std::fprintf(stderr, "concord: %s\n", result.error().to_string().c_str());
    return 1;
  }
  return 0;
}
