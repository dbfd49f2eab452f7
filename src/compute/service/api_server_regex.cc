// NameMatcher: the `name`/`ip` server list filters are regular expressions in Nova (re.search).
// std::regex backtracks (exponential on patterns like "(a+)+b") and recurses per character, so
// a hostile filter could pin a core or overflow the stack. This is a Thompson NFA simulated
// Pike-style: time O(pattern x text), memory O(pattern), whatever the input.
//
// Supported: literals, '.', classes [a-z] [^...], \d \w \s (and negations), escaped
// punctuation, anchors ^ $, groups (...) and (?:...), alternation |, quantifiers * + ? {m}
// {m,} {m,n} (lazy forms accepted, same result for a yes/no search). Bytes are matched one by
// one (UTF-8 in a literal works; '.' steps one byte). Anything else is kInvalidArgument.
#include <bitset>
#include <memory>
#include <string>
#include <vector>

#include "compute/service/api_servers_internal.h"

namespace concord::compute::servers {

namespace {

using ByteSet = std::bitset<256>;

struct Node {
  enum Kind { kSet, kBegin, kEnd, kCat, kAlt, kRep, kEmpty } kind = kEmpty;
  ByteSet set;
  std::vector<Node> kids;
  int min = 0, max = 0;  // kRep; max -1: unbounded
};

struct Inst {
  enum Op { kChar, kSplit, kJmp, kBegin, kEnd, kMatch } op = kMatch;
  int set = -1;  // kChar
  int x = 0, y = 0;
};

constexpr size_t kMaxPattern = 255;
constexpr size_t kMaxProgram = 20000;

class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  Result<Node> parse() {
    CONCORD_ASSIGN_OR_RETURN(Node n, alt(0));
    if (i_ != p_.size()) return err("unbalanced parenthesis");
    return n;
  }

 private:
  std::unexpected<Error> err(std::string_view why) const {
    return fail(Code::kInvalidArgument, "Invalid regular expression: " + std::string(why) +
                                            " at position " + std::to_string(i_));
  }

  Result<Node> alt(int depth) {
    if (depth > 32) return err("nesting too deep");
    Node n;
    n.kind = Node::kAlt;
    CONCORD_ASSIGN_OR_RETURN(Node first, cat(depth));
    n.kids.push_back(std::move(first));
    while (i_ < p_.size() && p_[i_] == '|') {
      ++i_;
      CONCORD_ASSIGN_OR_RETURN(Node next, cat(depth));
      n.kids.push_back(std::move(next));
    }
    if (n.kids.size() == 1) return std::move(n.kids[0]);
    return n;
  }

  Result<Node> cat(int depth) {
    Node n;
    n.kind = Node::kCat;
    while (i_ < p_.size() && p_[i_] != '|' && p_[i_] != ')') {
      CONCORD_ASSIGN_OR_RETURN(Node a, atom(depth));
      CONCORD_ASSIGN_OR_RETURN(Node r, quantified(std::move(a)));
      n.kids.push_back(std::move(r));
    }
    return n;
  }

  bool read_int(int& out) {
    size_t start = i_;
    out = 0;
    while (i_ < p_.size() && std::isdigit(static_cast<unsigned char>(p_[i_])) && i_ - start < 4) {
      out = out * 10 + (p_[i_] - '0');
      ++i_;
    }
    return i_ > start;
  }

  Result<Node> quantified(Node a) {
    while (i_ < p_.size()) {
      char c = p_[i_];
      int lo = 0, hi = 0;
      if (c == '*') {
        lo = 0, hi = -1, ++i_;
      } else if (c == '+') {
        lo = 1, hi = -1, ++i_;
      } else if (c == '?') {
        lo = 0, hi = 1, ++i_;
      } else if (c == '{') {
        size_t save = i_;
        ++i_;
        if (!read_int(lo)) {  // Python treats a '{' that starts no quantifier as a literal.
          i_ = save;
          return a;
        }
        hi = lo;
        if (i_ < p_.size() && p_[i_] == ',') {
          ++i_;
          if (!read_int(hi)) hi = -1;
        }
        if (i_ >= p_.size() || p_[i_] != '}') {
          i_ = save;
          return a;
        }
        ++i_;
        if (hi != -1 && hi < lo) return err("bad repetition bounds");
        if (lo > 100 || hi > 100) return err("repetition count too large");
      } else {
        return a;
      }
      if (a.kind == Node::kBegin || a.kind == Node::kEnd || a.kind == Node::kRep)
        return err("nothing to repeat");
      if (i_ < p_.size() && p_[i_] == '?') ++i_;  // lazy: same yes/no answer
      Node r;
      r.kind = Node::kRep;
      r.min = lo;
      r.max = hi;
      r.kids.push_back(std::move(a));
      a = std::move(r);
    }
    return a;
  }

  static ByteSet class_escape(char c, bool& known) {
    ByteSet s;
    known = true;
    switch (c) {
      case 'd':
      case 'D':
        for (int b = '0'; b <= '9'; ++b) s.set(b);
        break;
      case 'w':
      case 'W':
        for (int b = 0; b < 256; ++b)
          if (std::isalnum(b) || b == '_' || b >= 0x80) s.set(b);
        break;
      case 's':
      case 'S':
        for (char b : std::string_view(" \t\n\r\f\v")) s.set(static_cast<unsigned char>(b));
        break;
      default: known = false; return s;
    }
    if (std::isupper(static_cast<unsigned char>(c))) s.flip();
    return s;
  }

  Result<ByteSet> escape() {
    // p_[i_] is the character after '\'.
    if (i_ >= p_.size()) return err("trailing backslash");
    char c = p_[i_++];
    bool known = false;
    ByteSet s = class_escape(c, known);
    if (known) return s;
    if (c == 'n')
      s.set('\n');
    else if (c == 't')
      s.set('\t');
    else if (c == 'r')
      s.set('\r');
    else if (std::isalnum(static_cast<unsigned char>(c)))
      return err("unsupported escape");
    else
      s.set(static_cast<unsigned char>(c));
    return s;
  }

  Result<Node> atom(int depth) {
    Node n;
    char c = p_[i_];
    if (c == '(') {
      ++i_;
      if (p_.substr(i_).starts_with("?:")) {
        i_ += 2;
      } else if (i_ < p_.size() && p_[i_] == '?') {
        return err("unsupported group");
      }
      CONCORD_ASSIGN_OR_RETURN(n, alt(depth + 1));
      if (i_ >= p_.size() || p_[i_] != ')') return err("missing )");
      ++i_;
      return n;
    }
    if (c == '*' || c == '+' || c == '?') return err("nothing to repeat");
    ++i_;
    n.kind = Node::kSet;
    if (c == '^') {
      n.kind = Node::kBegin;
    } else if (c == '$') {
      n.kind = Node::kEnd;
    } else if (c == '.') {
      n.set.set();
      n.set.reset('\n');
    } else if (c == '\\') {
      CONCORD_ASSIGN_OR_RETURN(n.set, escape());
    } else if (c == '[') {
      bool negate = i_ < p_.size() && p_[i_] == '^';
      if (negate) ++i_;
      bool first = true;
      while (true) {
        if (i_ >= p_.size()) return err("unterminated character set");
        char d = p_[i_];
        if (d == ']' && !first) {
          ++i_;
          break;
        }
        first = false;
        ByteSet item;
        int lo = -1;
        if (d == '\\') {
          ++i_;
          CONCORD_ASSIGN_OR_RETURN(item, escape());
          if (item.count() == 1) {
            for (int b = 0; b < 256; ++b)
              if (item.test(b)) lo = b;
          }
        } else {
          lo = static_cast<unsigned char>(d);
          ++i_;
        }
        if (lo >= 0 && i_ + 1 < p_.size() && p_[i_] == '-' && p_[i_ + 1] != ']') {
          ++i_;
          int hi = static_cast<unsigned char>(p_[i_]);
          if (p_[i_] == '\\') {
            ++i_;
            CONCORD_ASSIGN_OR_RETURN(ByteSet h, escape());
            if (h.count() != 1) return err("bad character range");
            for (int b = 0; b < 256; ++b)
              if (h.test(b)) hi = b;
          } else {
            ++i_;
          }
          if (hi < lo) return err("bad character range");
          for (int b = lo; b <= hi; ++b) n.set.set(b);
        } else if (lo >= 0) {
          n.set.set(lo);
        } else {
          n.set |= item;
        }
      }
      if (negate) n.set.flip();
    } else {
      n.set.set(static_cast<unsigned char>(c));
    }
    return n;
  }

  std::string_view p_;
  size_t i_ = 0;
};

}  // namespace

struct NameMatcher::Program {
  std::vector<Inst> code;
  std::vector<ByteSet> sets;
  bool too_big = false;

  int emit(Inst i) {
    if (code.size() >= kMaxProgram) too_big = true;
    code.push_back(i);
    return static_cast<int>(code.size()) - 1;
  }

  void gen(const Node& n) {
    if (too_big) return;
    switch (n.kind) {
      case Node::kEmpty: return;
      case Node::kSet: {
        sets.push_back(n.set);
        emit({Inst::kChar, static_cast<int>(sets.size()) - 1, 0, 0});
        return;
      }
      case Node::kBegin: emit({Inst::kBegin}); return;
      case Node::kEnd: emit({Inst::kEnd}); return;
      case Node::kCat:
        for (const Node& k : n.kids) gen(k);
        return;
      case Node::kAlt: {
        std::vector<int> jumps;
        for (size_t k = 0; k < n.kids.size(); ++k) {
          if (k + 1 < n.kids.size()) {
            int split = emit({Inst::kSplit});
            code[split].x = split + 1;
            gen(n.kids[k]);
            jumps.push_back(emit({Inst::kJmp}));
            if (too_big) return;
            code[split].y = static_cast<int>(code.size());
          } else {
            gen(n.kids[k]);
          }
        }
        for (int j : jumps) code[j].x = static_cast<int>(code.size());
        return;
      }
      case Node::kRep: {
        const Node& body = n.kids[0];
        for (int k = 0; k < n.min; ++k) gen(body);
        if (n.max == -1) {
          int split = emit({Inst::kSplit});
          code[split].x = split + 1;
          gen(body);
          int jmp = emit({Inst::kJmp});
          if (too_big) return;
          code[jmp].x = split;
          code[split].y = static_cast<int>(code.size());
        } else {
          std::vector<int> splits;
          for (int k = n.min; k < n.max; ++k) {
            int split = emit({Inst::kSplit});
            if (too_big) return;
            code[split].x = split + 1;
            splits.push_back(split);
            gen(body);
          }
          for (int s : splits) code[s].y = static_cast<int>(code.size());
        }
        return;
      }
    }
  }
};

NameMatcher::NameMatcher() = default;
NameMatcher::NameMatcher(NameMatcher&&) noexcept = default;
NameMatcher& NameMatcher::operator=(NameMatcher&&) noexcept = default;
NameMatcher::~NameMatcher() = default;

Result<NameMatcher> NameMatcher::compile(std::string_view pattern) {
  if (pattern.size() > kMaxPattern)
    return fail(Code::kInvalidArgument, "Invalid regular expression: longer than 255 bytes");
  Parser parser(pattern);
  CONCORD_ASSIGN_OR_RETURN(Node root, parser.parse());
  NameMatcher m;
  m.prog_ = std::make_unique<Program>();
  m.prog_->gen(root);
  m.prog_->emit({Inst::kMatch});
  if (m.prog_->too_big)
    return fail(Code::kInvalidArgument, "Invalid regular expression: too complex");
  return m;
}

bool NameMatcher::search(std::string_view text) const {
  const std::vector<Inst>& code = prog_->code;
  const size_t n = code.size();
  std::vector<int> clist, nlist;
  std::vector<size_t> mark(n, SIZE_MAX);
  clist.reserve(n);
  nlist.reserve(n);
  // Adds pc and everything reachable without consuming a byte at position `pos`; true when a
  // Match is reachable.
  std::vector<int> stack;
  auto add = [&](std::vector<int>& list, int start, size_t pos) {
    stack.clear();
    stack.push_back(start);
    bool matched = false;
    while (!stack.empty()) {
      int pc = stack.back();
      stack.pop_back();
      if (mark[pc] == pos) continue;
      mark[pc] = pos;
      const Inst& in = code[pc];
      switch (in.op) {
        case Inst::kJmp: stack.push_back(in.x); break;
        case Inst::kSplit:
          stack.push_back(in.y);
          stack.push_back(in.x);
          break;
        case Inst::kBegin:
          if (pos == 0) stack.push_back(pc + 1);
          break;
        case Inst::kEnd:
          if (pos == text.size() || (pos + 1 == text.size() && text[pos] == '\n'))
            stack.push_back(pc + 1);
          break;
        case Inst::kMatch: matched = true; break;
        case Inst::kChar: list.push_back(pc); break;
      }
    }
    return matched;
  };
  for (size_t pos = 0;; ++pos) {
    if (add(clist, 0, pos)) return true;  // unanchored search: a thread starts at every byte
    if (pos == text.size()) return false;
    nlist.clear();
    const unsigned char c = static_cast<unsigned char>(text[pos]);
    bool matched = false;
    for (int pc : clist) {
      if (prog_->sets[code[pc].set].test(c)) matched |= add(nlist, pc + 1, pos + 1);
    }
    if (matched) return true;
    std::swap(clist, nlist);
  }
}

}  // namespace concord::compute::servers
