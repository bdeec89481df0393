// C++ unit tests of the BPE core, for people working on csrc/ without Python:
//   cmake -B build && cmake --build build -j && ctest --test-dir build --output-on-failure
// The thorough checks (parity with tiktoken and the `regex` module) are in tests/ (pytest).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bpe.h"
#include "pretokenize.h"

static int failures = 0;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) { std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); ++failures; } \
  } while (0)

static std::vector<std::string> pieces(const std::string& s) {
  std::vector<std::string> out;
  for (auto [b, e] : bpe::pretokenize_offsets(s)) out.push_back(s.substr(b, e - b));
  return out;
}

int main() {
  // Pre-tokenizer: the cases that make GPT-2's pattern subtle.
  CHECK((pieces("Hello world") == std::vector<std::string>{"Hello", " world"}));
  CHECK((pieces("it's") == std::vector<std::string>{"it", "'s"}));
  CHECK((pieces("a   b") == std::vector<std::string>{"a", "  ", " b"}));     // \s+(?!\S) leaves one space
  CHECK((pieces("a\n\nb") == std::vector<std::string>{"a", "\n", "\n", "b"}));
  CHECK((pieces("x  ") == std::vector<std::string>{"x", "  "}));            // trailing run kept whole
  CHECK((pieces(" 42!?") == std::vector<std::string>{" 42", "!?"}));
  CHECK((pieces("\xe4\xb8\xad\xe6\x96\x87 ok") == std::vector<std::string>{"\xe4\xb8\xad\xe6\x96\x87", " ok"}));

  // Train a tiny vocabulary, then encode/decode with it.
  bpe::Trainer trainer;
  for (int i = 0; i < 50; ++i) trainer.add_text("the cat sat on the mat with the hat ");
  size_t calls = 0;
  std::vector<std::string> tokens = trainer.train(10, [&](size_t, size_t) { ++calls; });
  CHECK(tokens.size() == 266);
  CHECK(calls > 0);
  CHECK(tokens[256] == " t" || tokens[256] == "at" || tokens[256] == "he" || tokens[256] == "th");
  std::vector<bpe::Rank> ranks;
  for (size_t r = 0; r < tokens.size(); ++r) ranks.push_back(bpe::Rank(r));
  bpe::Vocab vocab(tokens, ranks, {{"<|endoftext|>", 266}});
  CHECK(vocab.n_vocab() == 267);
  std::vector<bpe::Rank> ids;
  const std::string text = "the cat<|endoftext|> sat on a mat";
  vocab.encode(text, {"<|endoftext|>"}, ids);
  CHECK(ids.size() < text.size());
  std::string back;
  vocab.decode(ids.data(), ids.size(), back);
  CHECK(back == text);
  bool found_special = false;
  for (auto id : ids) found_special |= id == 266;
  CHECK(found_special);
  ids.clear();
  vocab.encode_ordinary(text, ids);
  for (auto id : ids) CHECK(id != 266);

  // Long pieces take the heap path and must give the same ids as the array path would.
  // Its work is linear (bpe.h, WorkCounters): each adjacent pair looked up at least once, at most 6n
  // heap pushes and pops in all.
  std::string long_piece(1000, 'a');
  ids.clear();
  const uint64_t steps_before = bpe::work_counters().merge_steps;
  vocab.encode_ordinary(long_piece, ids);
  const uint64_t steps = bpe::work_counters().merge_steps - steps_before;
  CHECK(steps >= long_piece.size() - 1 && steps <= 6 * long_piece.size());
  back.clear();
  vocab.decode(ids.data(), ids.size(), back);
  CHECK(back == long_piece);

  bool threw = false;
  try { bpe::Rank bad = 9999; vocab.decode(&bad, 1, back); } catch (const bpe::UnknownToken& e) { threw = e.id == 9999; }
  CHECK(threw);

  if (failures) { std::fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
  std::printf("bpe_core_test: all checks passed\n");
  return 0;
}
