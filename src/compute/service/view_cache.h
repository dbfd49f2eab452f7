#pragma once
// Rendered server views for the list detail path, by (server id, revision, variant).
//
// A page of 1,000 servers at microversion 2.79 is 1.75 MB of JSON; building it from full rows
// cost about 16 ms of CPU per page (bench/compute/api_scale.sh), two thirds reading and
// converting every column, one third rendering. A server's view changes only when its row
// does, and every write to a server (its metadata and tags included) goes through
// update_server(), which bumps `revision`: so the list reads (id, revision) for the page and
// renders only servers whose revision it has not rendered before. `variant` carries
// everything else a view depends on (microversion, admin or not, the link base URL); a
// server keeps one variant at a time. The parts that change without the row (host_status,
// from the host's heartbeats) are not in the cached text: see append_server_view_open().
//
// Bounded by bytes with least-recently-used eviction; deleted servers simply age out.
// Thread-safe (one mutex; a page takes it twice, not per server).
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace concord::compute {

class ServerViewCache {
 public:
  using Text = std::shared_ptr<const std::string>;
  struct Key {
    std::string id;
    int64_t revision = 0;
  };

  explicit ServerViewCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // For each key, the cached text rendered for `variant`, or null.
  std::vector<Text> get(const std::vector<Key>& keys, const std::string& variant);
  // Stores texts (parallel to keys), evicting the least recently used beyond the bound.
  void put(const std::vector<Key>& keys, const std::string& variant,
           const std::vector<Text>& texts);

  size_t bytes() const;
  size_t entries() const;

 private:
  struct Entry {
    int64_t revision = 0;
    std::string variant;
    Text text;
    std::list<std::string>::iterator lru;  // position in lru_ (front: most recent)
  };
  static size_t cost(const std::string& id, const Entry& e);

  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;
  size_t bytes_ = 0;
};

}  // namespace concord::compute
