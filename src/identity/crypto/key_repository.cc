// The Fernet key folder, laid out as Keystone's key repository so that operators can reuse
// their procedures (and key files) unchanged.
//
// Rotation must stay safe when the process dies at any instruction and when another process
// (a second server, `concord keys rotate`) shares the folder:
//   1. the new staged key is written to a temp file (fsync'ed, mode 0600);
//   2. the current staged key 0 is hard-linked as max+1: it becomes the primary, and 0 still
//      exists (both names hold the same key for a moment, which is harmless);
//   3. the temp file is renamed over 0: the new staged key appears atomically;
//   4. the oldest secondaries are unlinked until max_active_keys files remain.
// So a staged key always exists and no key file is ever half-written. Processes take
// flock() on the folder: exclusive to rotate or create, shared to read.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "base/encoding.h"
#include "base/log.h"
#include "base/random.h"
#include "identity/crypto/token.h"

namespace concord::identity {
namespace {

// Key file names have at most this many digits (a billion rotations).
constexpr size_t kMaxIndexDigits = 9;
constexpr size_t kMaxKeyFileBytes = 4096;
constexpr std::string_view kTempPrefix = ".tmp-";

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::unexpected<Error> io_error(const std::string& what, const std::string& path, int err) {
  return fail(Code::kFailedPrecondition, what + " " + path + ": " + errno_text(err));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_;
};

// flock() on the folder itself: released when the Fd closes.
Result<Fd> lock_folder(const std::string& dir, int operation) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open key folder", dir, errno);
  while (::flock(fd.get(), operation) != 0) {
    if (errno != EINTR) return io_error("cannot lock key folder", dir, errno);
  }
  return fd;
}

Status fsync_folder(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return io_error("cannot sync key folder", dir, errno);
  return ok();
}

// nullopt if the file vanished between listing and reading (a concurrent prune by a process
// that does not take the lock, e.g. a copy tool).
Result<std::optional<FernetKey>> read_key_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::nullopt;
    return io_error("cannot open key file", path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat key file", path, errno);
  if (!S_ISREG(st.st_mode)) {
    return fail(Code::kFailedPrecondition, "key file " + path + " is not a regular file");
  }
  std::string text(kMaxKeyFileBytes + 1, '\0');
  size_t used = 0;
  while (used < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot read key file", path, errno);
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > kMaxKeyFileBytes) {
    return fail(Code::kFailedPrecondition, "key file " + path + " is larger than " +
                                               std::to_string(kMaxKeyFileBytes) +
                                               " bytes; it is not a Fernet key");
  }
  text.resize(used);
  // Keys written by hand (echo, editors) end with a newline.
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' ||
                           text.back() == '\t')) {
    text.pop_back();
  }
  Result<FernetKey> key = FernetKey::from_base64(text);
  if (!key) {
    return fail(Code::kFailedPrecondition,
                "key file " + path + " does not hold a Fernet key (" + key.error().message() +
                    "); it must be 44 characters of base64url encoding 32 bytes");
  }
  return std::move(*key);
}

using IndexedKeys = std::vector<std::pair<int, FernetKey>>;

// Every key file in `dir`, ascending by index. Names that are not digits (temp files, a
// README) are ignored; digit names that are not a plain index (leading zero, too long) are
// errors, since an operator meant them as keys.
Result<IndexedKeys> read_folder(const std::string& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec)
    return fail(Code::kFailedPrecondition, "cannot list key folder " + dir + ": " + ec.message());
  IndexedKeys keys;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const std::string path = dir + "/" + name;
    if ((name.size() > 1 && name[0] == '0') || name.size() > kMaxIndexDigits) {
      return fail(Code::kFailedPrecondition,
                  "key file " + path + " is not named by a plain index (0, 1, 2, ...)");
    }
    CONCORD_ASSIGN_OR_RETURN(std::optional<FernetKey> key, read_key_file(path));
    if (key) keys.emplace_back(std::stoi(name), std::move(*key));
  }
  if (ec)
    return fail(Code::kFailedPrecondition, "cannot list key folder " + dir + ": " + ec.message());
  std::sort(keys.begin(), keys.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return keys;
}

// Writes a fresh key to a temp file in `dir` (mode 0600, fsync'ed); returns its path.
Result<std::string> write_temp_key(const std::string& dir, const FernetKey& key) {
  const std::string path = dir + "/" + std::string(kTempPrefix) + hex_encode(random_bytes(8));
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return io_error("cannot create key file", path, errno);
  const std::string text = key.to_base64();
  size_t done = 0;
  int err = 0;
  // fchmod: the umask may have removed bits but cannot have added any; this makes 0600 exact.
  if (::fchmod(fd.get(), 0600) != 0) err = errno;
  while (err == 0 && done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      err = errno;
    else
      done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    return io_error("cannot write key file", path, err);
  }
  return path;
}

Status write_key(const std::string& dir, int index, const FernetKey& key) {
  CONCORD_ASSIGN_OR_RETURN(std::string tmp, write_temp_key(dir, key));
  const std::string path = dir + "/" + std::to_string(index);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot install key file", path, err);
  }
  return ok();
}

// Temp files left by a process that died mid-write; called under the exclusive lock, so no
// live writer owns them.
void remove_stale_temp_files(const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(kTempPrefix)) ::unlink((dir + "/" + name).c_str());
  }
}

}  // namespace

KeyRepository::KeyRepository(PassKey, std::string dir, int max_active_keys)
    : dir_(std::move(dir)),
      max_active_keys_(max_active_keys),
      keys_(std::make_shared<const std::vector<FernetKey>>()) {}

Result<std::unique_ptr<KeyRepository>> KeyRepository::open(std::string dir, int max_active_keys) {
  if (max_active_keys < 2) {
    return fail(Code::kInvalidArgument,
                "max_active_keys must be at least 2 (a primary and a staged key), got " +
                    std::to_string(max_active_keys));
  }
  if (dir.empty()) return fail(Code::kInvalidArgument, "key folder path is empty");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::error_code ec;
  const bool created = std::filesystem::create_directories(dir, ec);
  if (ec)
    return fail(Code::kFailedPrecondition, "cannot create key folder " + dir + ": " + ec.message());
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return io_error("cannot stat key folder", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return fail(Code::kFailedPrecondition, "key folder " + dir + " is not a directory");
  }
  if (created) {
    if (::chmod(dir.c_str(), 0700) != 0) return io_error("cannot chmod key folder", dir, errno);
  } else if ((st.st_mode & 077) != 0) {
    // Not fatal: deployments that mount keys from a secret store choose their own modes.
    logger("identity")
        ->warn("key folder {} is accessible to group or others (mode {:o})", dir,
               st.st_mode & 0777);
  }

  auto repo = std::make_unique<KeyRepository>(PassKey{}, dir, max_active_keys);
  {
    CONCORD_ASSIGN_OR_RETURN(Fd lock, lock_folder(dir, LOCK_EX));
    remove_stale_temp_files(dir);
    CONCORD_ASSIGN_OR_RETURN(IndexedKeys keys, read_folder(dir));
    if (keys.empty()) {
      logger("identity")->info("key folder {} is empty; creating staged key 0 and primary 1", dir);
      CONCORD_RETURN_IF_ERROR(write_key(dir, 0, FernetKey::generate()));
      CONCORD_RETURN_IF_ERROR(write_key(dir, 1, FernetKey::generate()));
      CONCORD_RETURN_IF_ERROR(fsync_folder(dir));
      CONCORD_ASSIGN_OR_RETURN(keys, read_folder(dir));
    }
    if (keys.front().first != 0) {
      logger("identity")
          ->warn(
              "key folder {} has no staged key 0; rotation will fail until it "
              "is restored",
              dir);
    }
    repo->publish(std::move(keys));
  }
  return repo;
}

void KeyRepository::publish(IndexedKeys keys) {
  // Primary (highest index), then staged (0), then the other secondaries newest first.
  std::vector<int> indices;
  indices.reserve(keys.size());
  for (const auto& [index, key] : keys) indices.push_back(index);
  auto ordered = std::make_shared<std::vector<FernetKey>>();
  ordered->reserve(keys.size());
  ordered->push_back(keys.back().second);
  if (keys.size() > 1 && keys.front().first == 0) ordered->push_back(keys.front().second);
  for (size_t i = keys.size() - 1; i-- > 0;) {
    if (keys[i].first != 0) ordered->push_back(std::move(keys[i].second));
  }
  std::lock_guard lock(mu_);
  indices_ = std::move(indices);
  keys_ = std::move(ordered);
}

std::vector<FernetKey> KeyRepository::keys() const {
  std::lock_guard lock(mu_);
  return *keys_;
}

FernetKey KeyRepository::primary() const {
  std::lock_guard lock(mu_);
  return keys_->front();
}

std::shared_ptr<const std::vector<FernetKey>> KeyRepository::snapshot() const {
  std::lock_guard lock(mu_);
  return keys_;
}

std::vector<int> KeyRepository::indices() const {
  std::lock_guard lock(mu_);
  return indices_;
}

Status KeyRepository::reload() {
  std::lock_guard io(io_mu_);
  CONCORD_ASSIGN_OR_RETURN(Fd lock, lock_folder(dir_, LOCK_SH));
  CONCORD_ASSIGN_OR_RETURN(IndexedKeys keys, read_folder(dir_));
  if (keys.empty()) {
    return fail(Code::kFailedPrecondition,
                "key folder " + dir_ + " holds no key files; keeping the keys in use");
  }
  publish(std::move(keys));
  return ok();
}

Status KeyRepository::rotate() {
  std::lock_guard io(io_mu_);
  CONCORD_ASSIGN_OR_RETURN(Fd lock, lock_folder(dir_, LOCK_EX));
  remove_stale_temp_files(dir_);
  CONCORD_ASSIGN_OR_RETURN(IndexedKeys keys, read_folder(dir_));
  if (keys.empty() || keys.front().first != 0) {
    return fail(Code::kFailedPrecondition,
                "key folder " + dir_ +
                    " has no staged key (file 0) to promote; copy the folder from the replica "
                    "that rotated last");
  }
  const int max_index = keys.back().first;
  if (std::to_string(max_index + 1).size() > kMaxIndexDigits) {
    return fail(Code::kFailedPrecondition, "key folder " + dir_ + " has run out of key indices");
  }
  const int new_primary = max_index + 1;
  const std::string staged_path = dir_ + "/0";
  const std::string primary_path = dir_ + "/" + std::to_string(new_primary);

  CONCORD_ASSIGN_OR_RETURN(std::string tmp, write_temp_key(dir_, FernetKey::generate()));
  if (::link(staged_path.c_str(), primary_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot promote staged key to", primary_path, err);
  }
  if (::rename(tmp.c_str(), staged_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot install new staged key", staged_path, err);
  }

  // Files now: 0 (new), the old nonzero indices and new_primary. Drop the oldest nonzero.
  std::vector<int> nonzero;
  for (const auto& [index, key] : keys) {
    if (index != 0) nonzero.push_back(index);
  }
  nonzero.push_back(new_primary);
  size_t files = nonzero.size() + 1;
  for (size_t i = 0; files > static_cast<size_t>(max_active_keys_); ++i, --files) {
    const std::string path = dir_ + "/" + std::to_string(nonzero[i]);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      return io_error("cannot remove old key file", path, err);
    }
  }
  CONCORD_RETURN_IF_ERROR(fsync_folder(dir_));
  CONCORD_ASSIGN_OR_RETURN(keys, read_folder(dir_));
  if (keys.empty()) {
    return fail(Code::kFailedPrecondition,
                "key folder " + dir_ + " lost its key files during rotation");
  }
  logger("identity")
      ->info("rotated keys in {}: primary is now {}, {} key files", dir_, new_primary, keys.size());
  publish(std::move(keys));
  return ok();
}

}  // namespace concord::identity
