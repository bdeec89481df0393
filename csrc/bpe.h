// Byte-level BPE: a vocabulary that encodes and decodes, and a trainer that builds one.
//
// Encoding follows tiktoken exactly, so ids are identical for the same ranks:
//   text -> pre-tokens (pretokenize.h) -> for each piece: its rank if the whole piece is a token,
//   else start from single bytes and repeatedly merge the adjacent pair whose merged bytes have
//   the lowest rank (leftmost on ties) until no adjacent pair forms a token.
// Two speed-ups that keep the result identical:
//   * Pair lookups are by rank, not by bytes: every part is a token, so "the rank of
//     bytes(a) + bytes(b)" is a function of (rank a, rank b), precomputed into an integer hash
//     map from every token's every split into two tokens.
//   * A small cache maps recent pieces to their ids (text is Zipfian: most pieces are common
//     words), which skips the large vocabulary table and merging. The vocabulary owns a few caches;
//     each encode call leases a free one, so threads never share one and stay warm across calls.
//   * Short pieces merge in small arrays (no heap allocation); long pieces use a min-heap of
//     (rank, position) over a linked list, O(n log n) instead of tiktoken's O(n^2).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bpe {

using Rank = uint32_t;
constexpr Rank kNoRank = 0xFFFFFFFFu;
// Limits a vocabulary file is checked against before anything is allocated for it: far above real BPE
// vocabularies (GPT-2: 50k ids, longest token 128 bytes), low enough that a bad file cannot take
// gigabytes (one id of 200,000,000 once did) or minutes.
constexpr Rank kMaxTokenId = Rank(1) << 22;       // 4,194,304 ids
constexpr size_t kMaxTokenBytes = size_t(1) << 16;  // 65,536 bytes per token

uint64_t hash_bytes(const char* p, size_t n);

// Work done by the calling thread, counted so that tests bound an algorithm's cost by counting
// instead of timing: a regression to quadratic work fails a test (quickly, on a small input)
// instead of hanging it. Each count is a unit of the algorithm's inner loop:
//   merge_steps: adjacent pairs looked up or compared while merging pieces (both merge paths: the
//                small-array scan and the heap's pushes and pops);
//   split_steps: bytes hashed or trie edges walked while finding every token's splits into two
//                tokens (vocabulary construction).
// Work on other threads (encode_batch's workers) is counted on those threads.
struct WorkCounters {
  uint64_t merge_steps = 0;
  uint64_t split_steps = 0;
};
WorkCounters& work_counters();  // this thread's counters

// Open-addressing map from byte strings (stored elsewhere, by rank) to ranks.
class BytesToRank {
 public:
  void build(const std::vector<std::string_view>& keys_by_rank);
  Rank find(const char* p, size_t n) const { return find(p, n, hash_bytes(p, n)); }
  Rank find(const char* p, size_t n, uint64_t hash) const;  // `hash` = hash_bytes(p, n)
 private:
  struct Slot { uint64_t hash; Rank rank; };
  std::vector<Slot> slots_;
  const std::vector<std::string_view>* keys_ = nullptr;
  uint64_t mask_ = 0;
};

// Open-addressing map from a pair of ranks to the rank of their concatenation.
class PairToRank {
 public:
  void reserve(size_t n);
  void insert(Rank a, Rank b, Rank merged);
  Rank find(Rank a, Rank b) const {
    const uint64_t key = (uint64_t(a) << 32) | b;
    for (uint64_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kEmpty) return kNoRank;
    }
  }
 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t mix(uint64_t k) { k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33; return k; }
  struct Slot { uint64_t key; Rank value; };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  size_t size_ = 0;
};

class Vocab {
 public:
  // `tokens[i]` has rank `ranks[i]`; all 256 single bytes must be tokens. Specials: text -> id.
  Vocab(std::vector<std::string> tokens, std::vector<Rank> ranks,
        std::vector<std::pair<std::string, Rank>> specials);
  ~Vocab();  // defined where CacheEntry is complete

  // Ordinary text only: special-token text is encoded as text.
  void encode_ordinary(std::string_view text, std::vector<Rank>& out) const;
  // Text where the special tokens in `allowed` become their ids; everything else is ordinary.
  void encode(std::string_view text, const std::vector<std::string>& allowed, std::vector<Rank>& out) const;
  // Appends the BPE tokens of one pre-token piece (`cache` may be null).
  struct CacheEntry;
  void encode_piece(const char* p, size_t n, std::vector<Rank>& out, CacheEntry* cache) const;

  // Bytes of every id in order; throws UnknownToken for an id that is neither a token nor special.
  void decode(const Rank* ids, size_t n, std::string& out) const;
  bool has_id(Rank id) const { return id < decoder_len_.size() && decoder_len_[id] != kMissing; }
  std::string_view token_bytes(Rank id) const;

  size_t n_vocab() const { return n_vocab_; }
  Rank max_id() const { return Rank(decoder_len_.size()) - 1; }

 private:
  static constexpr uint32_t kMissing = 0xFFFFFFFFu;
  void merge_small(const uint8_t* p, size_t n, std::vector<Rank>& out) const;
  void merge_large(const uint8_t* p, size_t n, std::vector<Rank>& out) const;

  std::string decoder_bytes_;            // every token's bytes, back to back
  std::vector<uint32_t> decoder_off_;    // by id
  std::vector<uint32_t> decoder_len_;    // by id; kMissing where the id is unused
  std::vector<std::string_view> by_rank_;  // ordinary tokens' bytes by rank (empty if unused)
  BytesToRank token_to_rank_;
  PairToRank pair_to_rank_;
  std::unordered_map<std::string, Rank> specials_;
  Rank byte_rank_[256];
  size_t n_vocab_ = 0;
  static constexpr size_t kMaxCaches = 16;  // concurrent encode calls beyond this run uncached
  mutable std::array<std::atomic<bool>, kMaxCaches> cache_busy_{};
  mutable std::array<std::unique_ptr<CacheEntry[]>, kMaxCaches> caches_;
  friend class CacheLease;
};

struct UnknownToken : std::runtime_error {
  Rank id;
  explicit UnknownToken(Rank i) : std::runtime_error("unknown token id " + std::to_string(i)), id(i) {}
};

// Byte-level BPE training with incremental pair counts.
class Trainer {
 public:
  // Pre-tokenizes `text` and counts its pieces (call once per document or chunk).
  void add_text(std::string_view text);
  // Learns up to `n_merges` merges; returns the tokens by rank (256 single bytes, then merges).
  // `progress(done, total)` is called now and then; it may throw to abort.
  std::vector<std::string> train(size_t n_merges, const std::function<void(size_t, size_t)>& progress);
  size_t n_unique_pieces() const { return piece_counts_.size(); }
 private:
  std::unordered_map<std::string, int64_t> piece_counts_;
};

}  // namespace bpe
