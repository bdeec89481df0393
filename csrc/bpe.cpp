#include "bpe.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <queue>

#include "pretokenize.h"

namespace bpe {

// ---------------------------------------------------------------------------------------------
// Hashing

uint64_t hash_bytes(const char* p, size_t n) {
  // 8 bytes at a time, each folded in with a multiply-xorshift (splitmix64's finaliser).
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t(n) * 0xFF51AFD7ED558CCDULL);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  for (size_t k = 0; k < n; ++k) v |= uint64_t(uint8_t(p[k])) << (8 * k);
  h = (h ^ v) * 0x94D049BB133111EBULL;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  return h ^ (h >> 32);
}

WorkCounters& work_counters() {
  thread_local WorkCounters counters;
  return counters;
}

static uint64_t table_size_for(size_t n) {
  uint64_t cap = 16;
  while (cap < 2 * n + 1) cap <<= 1;
  return cap;
}

void BytesToRank::build(const std::vector<std::string_view>& keys_by_rank) {
  keys_ = &keys_by_rank;
  size_t n = 0;
  for (auto k : keys_by_rank) n += !k.empty();
  const uint64_t cap = table_size_for(n);
  slots_.assign(cap, Slot{0, kNoRank});
  mask_ = cap - 1;
  for (Rank r = 0; r < keys_by_rank.size(); ++r) {
    std::string_view k = keys_by_rank[r];
    if (k.empty()) continue;
    const uint64_t h = hash_bytes(k.data(), k.size());
    uint64_t i = h & mask_;
    while (slots_[i].rank != kNoRank) i = (i + 1) & mask_;
    slots_[i] = Slot{h, r};
  }
}

Rank BytesToRank::find(const char* p, size_t n, uint64_t h) const {
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.rank == kNoRank) return kNoRank;
    if (s.hash == h) {
      std::string_view k = (*keys_)[s.rank];
      if (k.size() == n && std::memcmp(k.data(), p, n) == 0) return s.rank;
    }
  }
}

void PairToRank::reserve(size_t n) {
  const uint64_t cap = table_size_for(n);
  slots_.assign(cap, Slot{kEmpty, kNoRank});
  mask_ = cap - 1;
  size_ = 0;
}

void PairToRank::insert(Rank a, Rank b, Rank merged) {
  const uint64_t key = (uint64_t(a) << 32) | b;
  uint64_t i = mix(key) & mask_;
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
  if (slots_[i].key == kEmpty) ++size_;
  slots_[i] = Slot{key, merged};
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

Vocab::Vocab(std::vector<std::string> tokens, std::vector<Rank> ranks,
             std::vector<std::pair<std::string, Rank>> specials) {
  if (tokens.size() != ranks.size()) throw std::invalid_argument("tokens and ranks differ in length");
  Rank max_rank = 0, max_id = 0;
  for (Rank r : ranks) max_rank = std::max(max_rank, r);
  max_id = max_rank;
  for (auto& [text, id] : specials) max_id = std::max(max_id, id);
  if (max_id >= kMaxTokenId)
    throw std::invalid_argument("token id " + std::to_string(max_id) + " is too large: ids must be below " +
                                std::to_string(kMaxTokenId));
  for (auto& t : tokens)
    if (t.size() > kMaxTokenBytes)
      throw std::invalid_argument("a token of " + std::to_string(t.size()) + " bytes is too long: at most " +
                                  std::to_string(kMaxTokenBytes));

  size_t total = 0;
  for (auto& t : tokens) total += t.size();
  for (auto& [text, id] : specials) total += text.size();
  decoder_bytes_.reserve(total);
  decoder_off_.assign(size_t(max_id) + 1, 0);
  decoder_len_.assign(size_t(max_id) + 1, kMissing);
  auto add_to_decoder = [&](const std::string& bytes, Rank id, const char* what) {
    if (decoder_len_[id] != kMissing)
      throw std::invalid_argument(std::string("id ") + std::to_string(id) + " is used twice (" + what + ")");
    decoder_off_[id] = uint32_t(decoder_bytes_.size());
    decoder_len_[id] = uint32_t(bytes.size());
    decoder_bytes_ += bytes;
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) throw std::invalid_argument("token with rank " + std::to_string(ranks[i]) + " is empty");
    add_to_decoder(tokens[i], ranks[i], "ordinary token");
  }
  for (auto& [text, id] : specials) {
    if (text.empty()) throw std::invalid_argument("a special token's text is empty");
    add_to_decoder(text, id, "special token");
    specials_.emplace(text, id);
  }
  // Views into decoder_bytes_ (no longer reallocated from here on).
  by_rank_.assign(size_t(max_rank) + 1, std::string_view());
  for (size_t i = 0; i < tokens.size(); ++i)
    by_rank_[ranks[i]] = std::string_view(decoder_bytes_.data() + decoder_off_[ranks[i]], decoder_len_[ranks[i]]);
  token_to_rank_.build(by_rank_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (token_to_rank_.find(tokens[i].data(), tokens[i].size()) != ranks[i])
      throw std::invalid_argument("two ranks have the same bytes (rank " + std::to_string(ranks[i]) + ")");
  }
  for (int b = 0; b < 256; ++b) {
    char c = char(b);
    byte_rank_[b] = token_to_rank_.find(&c, 1);
    if (byte_rank_[b] == kNoRank)
      throw std::invalid_argument("byte " + std::to_string(b) + " is not a token; a byte-level vocabulary needs all 256");
  }
  // Every way to write a token as two tokens gives one entry: (left, right) -> token. A short token's
  // splits are looked up directly (hash its prefix and its suffix at each split point). For a long
  // token that costs O(length^2) (a 160 kB token took 4.6 s), so long tokens get two byte tries built
  // from the long tokens alone, one of them reversed: walking a token down a trie marks the node where
  // it ends, and one walk along a long token then yields the rank of each of its prefixes (suffixes).
  // Work: O(total token bytes) in all; a vocabulary without long tokens builds no trie.
  constexpr size_t kDirectSplitMax = 64;
  size_t n_splits = 0, long_bytes = 0;
  for (auto& t : tokens) {
    n_splits += t.size() - 1;
    if (t.size() > kDirectSplitMax) long_bytes += t.size();
  }
  pair_to_rank_.reserve(n_splits);
  uint64_t split_steps = 0;  // bytes hashed or trie edges walked (work_counters().split_steps)
  PairToRank forward_edges, backward_edges;  // (node, byte) -> child node; node 0 is the root
  std::vector<Rank> forward_rank(1, kNoRank), backward_rank(1, kNoRank);  // the token ending at a node
  auto byte_at = [](const std::string& t, size_t k, bool reversed) { return Rank(uint8_t(reversed ? t[t.size() - 1 - k] : t[k])); };
  auto add_path = [&](PairToRank& edges, std::vector<Rank>& node_rank, const std::string& t, bool reversed) {
    Rank node = 0;
    split_steps += t.size();
    for (size_t k = 0; k < t.size(); ++k) {
      Rank next = edges.find(node, byte_at(t, k, reversed));
      if (next == kNoRank) {
        next = Rank(node_rank.size());
        node_rank.push_back(kNoRank);
        edges.insert(node, byte_at(t, k, reversed), next);
      }
      node = next;
    }
  };
  auto mark_end = [&](const PairToRank& edges, std::vector<Rank>& node_rank, const std::string& t, bool reversed, Rank r) {
    Rank node = 0;
    for (size_t k = 0; k < t.size() && node != kNoRank; ++k, ++split_steps) node = edges.find(node, byte_at(t, k, reversed));
    if (node != kNoRank) node_rank[node] = r;
  };
  if (long_bytes > 0) {
    forward_edges.reserve(long_bytes);
    backward_edges.reserve(long_bytes);
    for (auto& t : tokens)
      if (t.size() > kDirectSplitMax) {
        add_path(forward_edges, forward_rank, t, false);
        add_path(backward_edges, backward_rank, t, true);
      }
    for (size_t i = 0; i < tokens.size(); ++i) {  // every token that lies on a long token's path
      mark_end(forward_edges, forward_rank, tokens[i], false, ranks[i]);
      mark_end(backward_edges, backward_rank, tokens[i], true, ranks[i]);
    }
  }
  std::vector<Rank> prefix_rank, suffix_rank;  // by split point k: rank of t[0, k) and of t[k, n)
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    const size_t n = t.size();
    if (n <= kDirectSplitMax) {
      split_steps += n * (n - 1);  // each split point hashes the whole token (its prefix and suffix)
      for (size_t k = 1; k < n; ++k) {
        Rank a = token_to_rank_.find(t.data(), k);
        Rank b = token_to_rank_.find(t.data() + k, n - k);
        if (a != kNoRank && b != kNoRank) pair_to_rank_.insert(a, b, ranks[i]);
      }
      continue;
    }
    prefix_rank.assign(n, kNoRank);
    suffix_rank.assign(n, kNoRank);
    split_steps += 2 * (n - 1);  // one walk down each trie
    Rank node = 0;
    for (size_t k = 1; k < n; ++k) {
      node = forward_edges.find(node, uint8_t(t[k - 1]));
      prefix_rank[k] = forward_rank[node];  // t's own path: every node exists
    }
    node = 0;
    for (size_t k = n - 1; k >= 1; --k) {
      node = backward_edges.find(node, uint8_t(t[k]));
      suffix_rank[k] = backward_rank[node];
    }
    for (size_t k = 1; k < n; ++k)
      if (prefix_rank[k] != kNoRank && suffix_rank[k] != kNoRank) pair_to_rank_.insert(prefix_rank[k], suffix_rank[k], ranks[i]);
  }
  work_counters().split_steps += split_steps;
  n_vocab_ = size_t(max_id) + 1;
}

std::string_view Vocab::token_bytes(Rank id) const {
  if (!has_id(id)) throw UnknownToken(id);
  return std::string_view(decoder_bytes_.data() + decoder_off_[id], decoder_len_[id]);
}

void Vocab::decode(const Rank* ids, size_t n, std::string& out) const {
  for (size_t i = 0; i < n; ++i) {
    const Rank id = ids[i];
    if (!has_id(id)) throw UnknownToken(id);
    out.append(decoder_bytes_.data() + decoder_off_[id], decoder_len_[id]);
  }
}

constexpr size_t kSmallPiece = 128;  // longer pieces take the heap path

// Direct-mapped cache: piece bytes -> ids.
constexpr size_t kCacheEntries = 8192;
constexpr size_t kCacheMaxBytes = 22;
constexpr size_t kCacheMaxTokens = 8;
struct Vocab::CacheEntry {
  uint8_t len;  // 0: empty (pieces of one byte never enter the cache)
  uint8_t ntok;
  char bytes[kCacheMaxBytes];
  uint64_t hash;
  Rank toks[kCacheMaxTokens];
};

Vocab::~Vocab() = default;

// Holds one of the vocabulary's caches for the duration of an encode call (null if all are busy).
class CacheLease {
 public:
  explicit CacheLease(const Vocab& v) : v_(v) {
    for (size_t i = 0; i < Vocab::kMaxCaches; ++i) {
      if (!v.cache_busy_[i].exchange(true, std::memory_order_acquire)) {
        slot_ = i;
        if (!v.caches_[i]) v.caches_[i].reset(new Vocab::CacheEntry[kCacheEntries]());
        return;
      }
    }
  }
  ~CacheLease() { if (slot_ != kNone) v_.cache_busy_[slot_].store(false, std::memory_order_release); }
  Vocab::CacheEntry* get() const { return slot_ == kNone ? nullptr : v_.caches_[slot_].get(); }
 private:
  static constexpr size_t kNone = ~size_t(0);
  const Vocab& v_;
  size_t slot_ = kNone;
};

void Vocab::encode_piece(const char* p, size_t n, std::vector<Rank>& out, CacheEntry* cache) const {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  if (n == 1) { out.push_back(byte_rank_[u[0]]); return; }
  const uint64_t h = hash_bytes(p, n);
  CacheEntry* entry = nullptr;
  if (cache && n <= kCacheMaxBytes) {
    entry = &cache[h & (kCacheEntries - 1)];
    if (entry->hash == h && entry->len == n && std::memcmp(entry->bytes, p, n) == 0) {
      out.insert(out.end(), entry->toks, entry->toks + entry->ntok);
      return;
    }
  }
  const size_t before = out.size();
  const Rank whole = token_to_rank_.find(p, n, h);  // as tiktoken: a piece that is a token is that token
  if (whole != kNoRank) out.push_back(whole);
  else if (n <= kSmallPiece) merge_small(u, n, out);
  else merge_large(u, n, out);
  const size_t produced = out.size() - before;
  if (entry && produced <= kCacheMaxTokens) {
    entry->hash = h;
    entry->len = uint8_t(n);
    entry->ntok = uint8_t(produced);
    std::memcpy(entry->bytes, p, n);
    std::copy(out.begin() + before, out.end(), entry->toks);
  }
}

void Vocab::merge_small(const uint8_t* p, size_t n, std::vector<Rank>& out) const {
  // tok[0..m): the parts; pr[i]: rank of tok[i] + tok[i+1] (kNoRank: not a token).
  Rank tok[kSmallPiece], pr[kSmallPiece];
  size_t m = n;
  for (size_t i = 0; i < m; ++i) tok[i] = byte_rank_[p[i]];
  for (size_t i = 0; i + 1 < m; ++i) pr[i] = pair_to_rank_.find(tok[i], tok[i + 1]);
  uint64_t steps = m - 1;  // pairs looked up or compared (work_counters().merge_steps)
  while (m > 1) {
    Rank best = kNoRank;
    size_t at = 0;
    steps += m - 1 + 2;  // the scan, then at most two lookups
    for (size_t i = 0; i + 1 < m; ++i)
      if (pr[i] < best) { best = pr[i]; at = i; }  // strict <: leftmost wins ties
    if (best == kNoRank) break;
    tok[at] = best;
    std::memmove(tok + at + 1, tok + at + 2, (m - at - 2) * sizeof(Rank));
    if (at + 2 < m - 1) std::memmove(pr + at + 1, pr + at + 2, (m - at - 3) * sizeof(Rank));
    --m;
    if (at + 1 < m) pr[at] = pair_to_rank_.find(tok[at], tok[at + 1]);
    if (at > 0) pr[at - 1] = pair_to_rank_.find(tok[at - 1], tok[at]);
  }
  out.insert(out.end(), tok, tok + m);
  work_counters().merge_steps += steps;
}

void Vocab::merge_large(const uint8_t* p, size_t n, std::vector<Rank>& out) const {
  // Parts form a linked list indexed by their first byte; the heap holds (rank, position) of
  // candidate merges, packed in one integer so that ties pop leftmost. Entries go stale when a
  // neighbour merges; a popped entry is used only if it still describes the current pair.
  thread_local std::vector<Rank> tok;
  thread_local std::vector<uint32_t> next, prev;
  thread_local std::vector<uint64_t> heap;
  tok.resize(n);
  next.resize(n);
  prev.resize(n);
  heap.clear();
  uint64_t steps = 0;  // pairs looked up: one per push, one per pop (work_counters().merge_steps)
  const uint32_t end = uint32_t(n);
  for (uint32_t i = 0; i < n; ++i) { tok[i] = byte_rank_[p[i]]; next[i] = i + 1; prev[i] = i - 1; }
  auto push = [&](uint32_t i) {
    ++steps;
    Rank r = pair_to_rank_.find(tok[i], tok[next[i]]);
    if (r != kNoRank) { heap.push_back((uint64_t(r) << 32) | i); std::push_heap(heap.begin(), heap.end(), std::greater<>()); }
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t e = heap.back();
    heap.pop_back();
    ++steps;
    const Rank r = Rank(e >> 32);
    const uint32_t i = uint32_t(e);
    if (tok[i] == kNoRank || next[i] >= end) continue;           // part i was merged away
    if (pair_to_rank_.find(tok[i], tok[next[i]]) != r) continue;  // stale entry
    const uint32_t j = next[i];
    tok[i] = r;
    tok[j] = kNoRank;
    next[i] = next[j];
    if (next[j] < end) prev[next[j]] = i;
    if (i > 0) push(prev[i]);
    if (next[i] < end) push(i);
  }
  for (uint32_t i = 0; i < end; i = next[i]) out.push_back(tok[i]);
  work_counters().merge_steps += steps;
}

void Vocab::encode_ordinary(std::string_view text, std::vector<Rank>& out) const {
  CacheLease lease(*this);
  CacheEntry* cache = lease.get();
  pretokenize(text.data(), text.size(),
              [&](size_t b, size_t e) { encode_piece(text.data() + b, e - b, out, cache); });
}

void Vocab::encode(std::string_view text, const std::vector<std::string>& allowed, std::vector<Rank>& out) const {
  // Leftmost allowed special first (longest on a tie); the text between is ordinary.
  std::vector<size_t> next_at(allowed.size(), 0);
  std::vector<bool> fresh(allowed.size(), false);
  size_t pos = 0;
  while (true) {
    size_t best = std::string_view::npos, best_len = 0, best_k = 0;
    for (size_t k = 0; k < allowed.size(); ++k) {
      if (allowed[k].empty()) continue;
      if (!fresh[k] || (next_at[k] != std::string_view::npos && next_at[k] < pos)) {
        next_at[k] = text.find(allowed[k], pos);
        fresh[k] = true;
      }
      const size_t at = next_at[k];
      if (at != std::string_view::npos && (at < best || (at == best && allowed[k].size() > best_len))) {
        best = at; best_len = allowed[k].size(); best_k = k;
      }
    }
    if (best == std::string_view::npos) { encode_ordinary(text.substr(pos), out); return; }
    encode_ordinary(text.substr(pos, best - pos), out);
    auto it = specials_.find(allowed[best_k]);
    if (it == specials_.end()) throw std::invalid_argument("'" + allowed[best_k] + "' is not a special token");
    out.push_back(it->second);
    pos = best + best_len;
  }
}

// ---------------------------------------------------------------------------------------------
// Training

void Trainer::add_text(std::string_view text) {
  pretokenize(text.data(), text.size(), [&](size_t b, size_t e) {
    ++piece_counts_[std::string(text.data() + b, e - b)];
  });
}

namespace {
inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
struct HeapEntry {
  int64_t count;
  uint64_t pair;
  // priority_queue pops the largest: the highest count, then the smallest pair (deterministic).
  bool operator<(const HeapEntry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};
}  // namespace

std::vector<std::string> Trainer::train(size_t n_merges, const std::function<void(size_t, size_t)>& progress) {
  // Words: the distinct pieces, as symbol sequences, sorted so that the result does not depend
  // on hash-map order.
  std::vector<std::pair<std::string, int64_t>> pieces(piece_counts_.begin(), piece_counts_.end());
  std::sort(pieces.begin(), pieces.end());
  std::vector<std::vector<int32_t>> words(pieces.size());
  std::vector<int64_t> freq(pieces.size());
  for (size_t w = 0; w < pieces.size(); ++w) {
    for (unsigned char c : pieces[w].first) words[w].push_back(c);
    freq[w] = pieces[w].second;
  }
  pieces.clear();
  pieces.shrink_to_fit();

  std::vector<std::string> tokens(256);
  std::unordered_map<std::string, int32_t> token_id;
  for (int b = 0; b < 256; ++b) { tokens[b] = std::string(1, char(b)); token_id[tokens[b]] = b; }

  // Pair counts (weighted by word frequency) and, per pair, the words it occurs in. The word
  // lists may hold duplicates and words that no longer contain the pair; both are filtered when
  // the pair is merged, which is cheaper than keeping them exact.
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += freq[w];
      auto& lst = where[k];
      if (lst.empty() || lst.back() != int32_t(w)) lst.push_back(int32_t(w));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (auto& [k, c] : pair_count) heap.push({c, k});

  const size_t report_every = std::max<size_t>(1, n_merges / 200);
  size_t added = 0;
  std::unordered_map<uint64_t, int64_t> delta;
  std::vector<int32_t> merged;
  if (progress) progress(0, n_merges);
  while (added < n_merges && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    const int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current <= 0) continue;
    if (current != top.count) { heap.push({current, top.pair}); continue; }  // stale: requeue

    const int32_t a = int32_t(top.pair >> 32), b = int32_t(uint32_t(top.pair));
    std::string bytes = tokens[a] + tokens[b];
    int32_t id;
    auto found = token_id.find(bytes);
    if (found != token_id.end()) {
      id = found->second;  // same bytes reached by another split: reuse it (ranks stay unique)
    } else {
      id = int32_t(tokens.size());
      token_id.emplace(bytes, id);
      tokens.push_back(std::move(bytes));
      ++added;
    }

    std::vector<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    delta.clear();
    for (int32_t w : affected) {
      auto& s = words[w];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      const int64_t f = freq[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= f;
      merged.clear();
      for (size_t i = 0; i < s.size();) {  // non-overlapping, left to right (as encoding does)
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) { merged.push_back(id); i += 2; }
        else merged.push_back(s[i++]);
      }
      s.assign(merged.begin(), merged.end());
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        delta[k] += f;
        if (s[i] == id || s[i + 1] == id) where[k].push_back(w);
      }
    }
    for (auto& [k, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[k];
      c += d;
      if (c <= 0) pair_count.erase(k);
      else if (d > 0) heap.push({c, k});
    }
    if (progress && (added % report_every == 0 || added == n_merges)) progress(added, n_merges);
  }
  if (progress) progress(added, n_merges);
  return tokens;
}

}  // namespace bpe
