#include "base/time_format.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace concord {
namespace {

struct Parts {
  std::tm tm{};
  long micros = 0;
};

Parts split(SystemTime t) {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  long long secs = us / 1'000'000;
  long micros = static_cast<long>(us % 1'000'000);
  if (micros < 0) {
    micros += 1'000'000;
    secs -= 1;
  }
  Parts p;
  std::time_t tt = static_cast<std::time_t>(secs);
  gmtime_r(&tt, &p.tm);
  p.micros = micros;
  return p;
}

bool read_int(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size()) return false;
  for (size_t i = pos; i < pos + len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(s.data() + pos, s.data() + pos + len, out);
  return ec == std::errc();
}

}  // namespace

std::string format_keystone_time(SystemTime t) {
  Parts p = split(t);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", p.tm.tm_year + 1900,
                p.tm.tm_mon + 1, p.tm.tm_mday, p.tm.tm_hour, p.tm.tm_min, p.tm.tm_sec, p.micros);
  return buf;
}

std::string format_iso_naive(SystemTime t) {
  Parts p = split(t);
  char buf[96];
  if (p.micros == 0) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", p.tm.tm_year + 1900,
                  p.tm.tm_mon + 1, p.tm.tm_mday, p.tm.tm_hour, p.tm.tm_min, p.tm.tm_sec);
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld", p.tm.tm_year + 1900,
                  p.tm.tm_mon + 1, p.tm.tm_mday, p.tm.tm_hour, p.tm.tm_min, p.tm.tm_sec, p.micros);
  }
  return buf;
}

std::optional<SystemTime> parse_iso_time(std::string_view s) {
  int year, mon, day, hour, min, sec;
  if (!read_int(s, 0, 4, year) || s.size() < 19 || s[4] != '-' || !read_int(s, 5, 2, mon) ||
      s[7] != '-' || !read_int(s, 8, 2, day) || (s[10] != 'T' && s[10] != ' ') ||
      !read_int(s, 11, 2, hour) || s[13] != ':' || !read_int(s, 14, 2, min) || s[16] != ':' ||
      !read_int(s, 17, 2, sec)) {
    return std::nullopt;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  long micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 6) micros = micros * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (size_t i = digits; i < 6; ++i) micros *= 10;
  }
  std::string_view zone = s.substr(pos);
  if (!(zone.empty() || zone == "Z" || zone == "+00:00" || zone == "+0000")) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  std::time_t secs = timegm(&tm);
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2262): saturate beyond that
  // rather than wrap, so "changes-since=2999-01-01" means "after everything", not 1830.
  constexpr auto kMaxSecs =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count() - 1;
  if (secs >= kMaxSecs) return SystemTime::max();
  if (secs <= -kMaxSecs) return SystemTime::min();
  return SystemTime(std::chrono::seconds(secs)) + std::chrono::microseconds(micros);
}

}  // namespace concord
