#include "pretokenize.h"

namespace bpe {

std::vector<std::pair<size_t, size_t>> pretokenize_offsets(std::string_view text) {
  std::vector<std::pair<size_t, size_t>> out;
  pretokenize(text.data(), text.size(), [&](size_t b, size_t e) { out.emplace_back(b, e); });
  return out;
}

}  // namespace bpe
