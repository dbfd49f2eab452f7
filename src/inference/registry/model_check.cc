#include "inference/registry/model_check.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "inference/onnx/onnx_model.h"
#include "inference/runtime/runtimes.h"

namespace concord::inference::registry {

LoadFunction runtime_loader(std::string runtime_name) {
  return [name = std::move(runtime_name)](std::string_view bytes) -> Result<ModelMetadata> {
    CONCORD_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> runtime, make_runtime(name));
    CONCORD_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, runtime->load(bytes));
    return model->metadata();
  };
}

ModelChecker::ModelChecker(LoadFunction load, std::chrono::milliseconds timeout, int max_running)
    : load_(std::move(load)), timeout_(timeout), max_running_(max_running < 1 ? 1 : max_running) {}

namespace {

// What a load thread and its waiter share; the thread keeps it alive after an abandoned wait.
struct Pending {
  std::string bytes;
  std::mutex mu;
  std::condition_variable done_cv;
  std::optional<Result<ModelMetadata>> result;  // guarded by mu
};

}  // namespace

Result<ModelMetadata> ModelChecker::check(std::string bytes) const {
  // The parser is cheap, bounded and fuzzed: malformed uploads never reach the runtime.
  if (auto parsed = parse_onnx_model(bytes); !parsed) return fail(parsed.error());

  int now_running = running_->load();
  do {
    if (now_running >= max_running_) {
      return fail(Code::kUnavailable, "the server is already checking " +
                                          std::to_string(now_running) +
                                          " uploaded models; retry the upload later");
    }
  } while (!running_->compare_exchange_weak(now_running, now_running + 1));

  auto pending = std::make_shared<Pending>();
  pending->bytes = std::move(bytes);
  try {
    std::thread([pending, load = load_, running = running_] {
      Result<ModelMetadata> r = fail(Code::kInternal, "the model check did not run");
      try {
        r = load(pending->bytes);
      } catch (const std::exception& e) {
        r = fail(Code::kFailedPrecondition, std::string("the runtime failed: ") + e.what());
      }
      // The slot is freed before the waiter can see the result, so an upload that follows a
      // finished check never finds the slot still taken.
      running->fetch_sub(1);
      {
        std::lock_guard lock(pending->mu);
        pending->result = std::move(r);
      }
      pending->done_cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    running_->fetch_sub(1);
    return fail(Code::kUnavailable, std::string("cannot start a model check: ") + e.what());
  }

  std::unique_lock lock(pending->mu);
  if (!pending->done_cv.wait_for(lock, timeout_, [&] { return pending->result.has_value(); })) {
    return fail(Code::kFailedPrecondition, "the runtime did not finish loading the model within " +
                                               std::to_string(timeout_.count()) + " ms");
  }
  return std::move(*pending->result);
}

}  // namespace concord::inference::registry
