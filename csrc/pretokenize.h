// GPT-2's pre-tokenizer, written out by hand.
//
// The pattern (tiktoken's r50k/gpt2 `pat_str`):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// A regex engine tries the alternatives left to right at each position and takes the first
// that matches. Every alternative except `\s+(?!\S)` is a greedy run that never needs to
// backtrack, so a scanner can decide with one look at the first one or two code points:
//   '  + s t m d / re ve ll (lower case only)       -> the contraction
//   optional U+0020, then a letter / number / other -> the run of that class
//   white space                                     -> `\s+(?!\S)`: the whole run when it reaches
//        the end of the text; otherwise the run minus its last code point (the last one then
//        joins the next piece, e.g. "  x" -> " ", " x"), and when that leaves nothing, `\s+`
//        takes the single white-space code point.
// Classes come from csrc/unicode_tables.h (Unicode 16.0.0, tiktoken's; csrc/gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "unicode_tables.h"

namespace bpe {

struct CodePoint {
  uint32_t len;   // bytes in UTF-8 (an invalid byte counts as one code point of class 0)
  uint8_t cls;    // unicode::kLetter | kNumber | kSpace bits
};

inline CodePoint decode_class(const uint8_t* s, size_t i, size_t n) {
  uint8_t b = s[i];
  if (b < 0x80) return {1, unicode::kStage2[b]};  // block 0 covers ASCII
  uint32_t cp, len;
  if ((b & 0xE0) == 0xC0) { cp = b & 0x1F; len = 2; }
  else if ((b & 0xF0) == 0xE0) { cp = b & 0x0F; len = 3; }
  else if ((b & 0xF8) == 0xF0) { cp = b & 0x07; len = 4; }
  else return {1, 0};
  if (i + len > n) return {1, 0};
  for (uint32_t k = 1; k < len; ++k) {
    uint8_t c = s[i + k];
    if ((c & 0xC0) != 0x80) return {1, 0};
    cp = (cp << 6) | (c & 0x3F);
  }
  return {len, unicode::char_class(cp)};
}

// Calls on_piece(begin, end) (byte offsets) for each pre-token of s[0, n), in order.
template <class OnPiece>
inline void pretokenize(const char* text, size_t n, OnPiece&& on_piece) {
  const auto* s = reinterpret_cast<const uint8_t*>(text);
  constexpr uint8_t kLN = unicode::kLetter | unicode::kNumber;
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    // 1. Contractions: 's 't 'm 'd 're 've 'll.
    if (s[i] == '\'' && i + 1 < n) {
      uint8_t a = s[i + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd') { on_piece(start, i + 2); i += 2; continue; }
      if (i + 2 < n) {
        uint8_t b = s[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          on_piece(start, i + 3); i += 3; continue;
        }
      }
    }
    CodePoint c = decode_class(s, i, n);
    size_t j = i;  // where the class run starts
    if (s[i] == ' ' && i + 1 < n) {
      CodePoint next = decode_class(s, i + 1, n);
      if (!(next.cls & unicode::kSpace)) { c = next; j = i + 1; }  // " ?" takes the space
    }
    if (!(c.cls & unicode::kSpace) || j != i) {
      // 2-4. ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: extend while the class stays the same.
      // A code point that is both letter-and-space does not exist, so the class test is exact.
      const uint8_t want = c.cls & kLN;  // 0 means "other"
      size_t k = j + c.len;
      while (k < n) {
        CodePoint d = decode_class(s, k, n);
        if (want ? !(d.cls & want) : (d.cls & (kLN | unicode::kSpace)) != 0) break;
        k += d.len;
      }
      on_piece(start, k);
      i = k;
      continue;
    }
    // 5-6. White space run [i, k); `last` is where its final code point starts.
    size_t k = i, last = i;
    while (k < n) {
      CodePoint d = decode_class(s, k, n);
      if (!(d.cls & unicode::kSpace)) break;
      last = k;
      k += d.len;
    }
    if (k < n && last > i) k = last;  // followed by non-space: leave the last one for the next piece
    on_piece(start, k);
    i = k;
  }
}

// Convenience for tests and bindings: the pieces as (begin, end) byte offsets.
std::vector<std::pair<size_t, size_t>> pretokenize_offsets(std::string_view text);

}  // namespace bpe
