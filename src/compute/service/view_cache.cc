#include "compute/service/view_cache.h"

namespace concord::compute {

size_t ServerViewCache::cost(const std::string& id, const Entry& e) {
  // The text, the key twice (map and list) and the entry's own overhead.
  return (e.text ? e.text->size() : 0) + 2 * id.size() + e.variant.size() + 96;
}

std::vector<ServerViewCache::Text> ServerViewCache::get(const std::vector<Key>& keys,
                                                        const std::string& variant) {
  std::vector<Text> out(keys.size());
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = map_.find(keys[i].id);
    if (it == map_.end()) continue;
    Entry& e = it->second;
    if (e.revision != keys[i].revision || e.variant != variant) continue;
    lru_.splice(lru_.begin(), lru_, e.lru);
    out[i] = e.text;
  }
  return out;
}

void ServerViewCache::put(const std::vector<Key>& keys, const std::string& variant,
                          const std::vector<Text>& texts) {
  if (max_bytes_ == 0) return;
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < keys.size() && i < texts.size(); ++i) {
    if (!texts[i]) continue;
    const std::string& id = keys[i].id;
    auto it = map_.find(id);
    if (it == map_.end()) {
      lru_.push_front(id);
      it = map_.emplace(id, Entry{}).first;
      it->second.lru = lru_.begin();
    } else {
      bytes_ -= cost(id, it->second);
      lru_.splice(lru_.begin(), lru_, it->second.lru);
    }
    Entry& e = it->second;
    // A concurrent page may have rendered a newer revision already: keep the newer one.
    if (e.text && e.revision > keys[i].revision) {
      bytes_ += cost(id, e);
      continue;
    }
    e.revision = keys[i].revision;
    e.variant = variant;
    e.text = texts[i];
    bytes_ += cost(id, e);
  }
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    auto victim = map_.find(lru_.back());
    bytes_ -= cost(victim->first, victim->second);
    map_.erase(victim);
    lru_.pop_back();
  }
}

size_t ServerViewCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

size_t ServerViewCache::entries() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

}  // namespace concord::compute
