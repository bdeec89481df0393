"""The tokenizer trainer's documented tie-break (gpt/tokenizer.py Tokenizer.train; csrc/bpe.cpp HeapEntry):
the most frequent pair merges first, and pairs of equal count merge in the order of their ids, (a, b)
before (a', b') when a < a', or a == a' and b < b'. The order of the documents does not matter."""
import itertools

from gpt.tokenizer import Tokenizer


def merges(docs, n):
    tok = Tokenizer.train(docs, 256 + n + 1)  # + <|endoftext|>
    learned = sorted((rank, token) for token, rank in tok.mergeable_ranks.items() if rank >= 256)
    return [token for _, token in learned]


def test_equal_counts_merge_in_pair_id_order():
    # one word each, so every pair counts 1: (a, y) = (97, 121) < (b, a) = (98, 97) < (d, c) < (x, a).
    # A tie broken by first occurrence, by the larger pair, or by the bytes' text would order them otherwise.
    docs = ["dc", "xa", "ba", "ay"]
    want = [b"ay", b"ba", b"dc", b"xa"]
    for order in itertools.permutations(docs):
        assert merges(list(order), 4) == want, order


def test_count_beats_id_order_and_ties_among_new_tokens():
    # (z, z) counts 5 and merges first although its ids are the largest; then (a, y), (b, a) and (zz, q)
    # tie at 2, and the merged token zz (id 256) takes part in the tie with its id: after (97, 121) and
    # (98, 97). (z, q) also counted 2, but the zz merge consumed it.
    docs = ["zz", "zz", "zz", "ay", "ay", "ba", "ba", "zzq", "zzq"]
    got = merges(docs, 4)
    assert got == [b"zz", b"ay", b"ba", b"zzq"], got
