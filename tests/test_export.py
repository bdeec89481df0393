"""gpt/export.py + train/export.py: a model we trained, exported to a transformers GPT-2 folder, gives the
same logits (fp32, <= 1e-5), the same token ids (English, SQL, hypothesis-generated text) and the same
greedy continuation in transformers; a GPT-2-format folder on disk loads back into our GPT; what cannot
be represented is refused with a one-line reason. Skips without `transformers`/`safetensors`."""
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from data.prepare import write_tokenized  # noqa: E402
from gpt.export import (config_from_hf, read_hf_folder, read_hf_tokenizer, vocab_and_merges,  # noqa: E402
                        write_hf_folder, write_hf_tokenizer)
from gpt.generate import generate_ids  # noqa: E402
from gpt.model import GPT, GPTConfig  # noqa: E402
from gpt.tokenizer import Tokenizer  # noqa: E402
from tests.conftest import SHARED  # noqa: E402
from text2sql.prompt import SPECIAL_TOKENS  # noqa: E402
from train.checkpoint import load_checkpoint, load_for_inference  # noqa: E402
from train.config import load_config  # noqa: E402
from train.loop import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = [
    "First Citizen: Before we proceed any further, hear me speak.",
    "How many singers are there, and what's the average age of the French ones?",
    "It was the best of times, it was the worst of times -- isn't it?  Yes!\n\n  Indeed.",
    "Café naïve résumé: 3.14159 × 2 = 6.28; 日本語のテキスト; emoji 🤖👍🏽 ok",
]
SQL = [
    "SELECT count(*) FROM singer",
    "SELECT name, country, age FROM singer ORDER BY age DESC",
    "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id WHERE T1.year = 2014",
    "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France' GROUP BY gender HAVING count(*) > 1",
    "SELECT name FROM people WHERE name LIKE '%son%' AND age BETWEEN 20 AND 30 EXCEPT SELECT name FROM staff",
]


def corpus(n: int = 300) -> list[str]:
    rng = random.Random(0)
    words = " ".join(ENGLISH + SQL).split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(n)] + ENGLISH + SQL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GPT trained for a few steps by `train.loop.run`, its checkpoint, and its export."""
    d = tmp_path_factory.mktemp("export")
    texts = corpus()
    tok = Tokenizer.train(texts, 400, SPECIAL_TOKENS)
    (d / "data").mkdir()
    tok.save(str(d / "data" / "tokenizer.tiktoken"))
    write_tokenized(d / "data", tok, {"train": texts[:280], "val": texts[280:]}, SPECIAL_TOKENS, progress=False,
                    tokenizer="tokenizer.tiktoken", source="test")
    run(load_config("tiny", [f"data.dir={d / 'data'}", f"train.out_dir={d / 'run'}", "train.max_steps=6",
                             "train.progress=false", "train.eval_interval=0", "train.threads=1"]))
    out = d / "hf"
    r = subprocess.run([sys.executable, "-m", "train.export", "--checkpoint", str(d / "run"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    model, ours, _, _ = load_for_inference(d / "run", torch.device("cpu"))
    return {"dir": d, "hf_dir": out, "model": model, "tok": ours,
            "hf_model": transformers.GPT2LMHeadModel.from_pretrained(out).eval(),
            "hf_tok": transformers.AutoTokenizer.from_pretrained(out)}


def our_logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.hidden_states(ids) @ model.wte.weight.T


def test_export_writes_the_files_transformers_reads(trained):
    names = {p.name for p in trained["hf_dir"].iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json"} <= names
    cfg = json.loads((trained["hf_dir"] / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["n_positions"] == trained["model"].config.block_size


def test_exported_logits_equal_ours_on_random_ids(trained):
    model, hf = trained["model"], trained["hf_model"]
    g = torch.Generator().manual_seed(0)
    for length in (1, 17, model.config.block_size):
        ids = torch.randint(0, model.config.vocab_size, (3, length), generator=g)
        with torch.no_grad():
            theirs = hf(ids).logits
        assert theirs.dtype == torch.float32
        assert (theirs - our_logits(model, ids)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("bias", [True, False])
def test_random_models_of_other_shapes_export_exactly(tmp_path, bias):
    """Odd widths, three layers, and bias=False (exported as zero biases) give the same logits."""
    torch.manual_seed(1)
    config = GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=40, vocab_size=300, bias=bias)
    model = GPT(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    tok = Tokenizer.train(corpus(50), 290, ["<|endoftext|>"])
    write_hf_folder(tmp_path, model.state_dict(), config, tok)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        assert (hf(ids).logits - our_logits(model, ids)).abs().max().item() <= 1e-5


def assert_same_ids(ours: Tokenizer, hf_tok, text: str):
    expected = ours.encode(text, allowed_special="all")
    got = hf_tok.encode(text, add_special_tokens=False)
    assert got == expected, f"{text!r}: ours {expected[:20]} vs transformers {got[:20]}"
    assert hf_tok.decode(got) == ours.decode(expected)


@pytest.mark.parametrize("text", ENGLISH + SQL + ["", " ", "a" * 50, "<|endoftext|>SELECT 1<|sql|> x"])
def test_hf_tokenizer_ids_equal_ours(trained, text):
    assert_same_ids(trained["tok"], trained["hf_tok"], text)


def test_hf_tokenizer_ids_equal_ours_on_shared_english_and_spider_sql(trained):
    shakespeare, spider = SHARED / "data" / "text" / "tinyshakespeare.txt", SHARED / "data" / "spider" / "train.json"
    if not shakespeare.is_file() or not spider.is_file():
        pytest.skip(f"{shakespeare} or {spider} is absent (shared data not available on this machine)")
    lines = shakespeare.read_text().splitlines()[:400]
    queries = [r["query"] for r in json.loads(spider.read_text())[:300]]
    for text in ["\n".join(lines[i:i + 20]) for i in range(0, 400, 20)] + queries:
        assert_same_ids(trained["tok"], trained["hf_tok"], text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80) | st.text(alphabet="ab c\n'sSELECT(),*", max_size=60))
def test_hf_tokenizer_ids_equal_ours_on_generated_text(trained, text):
    assert_same_ids(trained["tok"], trained["hf_tok"], text)


def test_greedy_generate_gives_the_same_continuation(trained):
    model, hf, tok = trained["model"], trained["hf_model"], trained["tok"]
    for prompt in ("How many singers", "SELECT name FROM"):
        ids = tok.encode(prompt)
        ours = generate_ids(model, ids, max_new_tokens=30, temperature=0.0)
        out = hf.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False, eos_token_id=None,
                          pad_token_id=tok.eot_token)
        assert out[0, len(ids):].tolist() == ours


def test_gpt2_tokenizer_exports_and_reads_back(tmp_path):
    gpt2 = SHARED / "data" / "gpt2"
    if not (gpt2 / "encoder.json").is_file():
        pytest.skip(f"{gpt2} is absent (shared data not available on this machine)")
    ours = Tokenizer.from_gpt2(gpt2 / "encoder.json", gpt2 / "vocab.bpe")
    write_hf_tokenizer(tmp_path, ours)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in ENGLISH + SQL + ["  hello   world\n\n\tend <|endoftext|>"]:
        assert_same_ids(ours, hf_tok, text)
    # GPT-2's own files (encoder.json = vocab.json, vocab.bpe = merges.txt) read back to the same ranks
    original = tmp_path / "original"
    original.mkdir()
    shutil.copy(gpt2 / "encoder.json", original / "vocab.json")
    shutil.copy(gpt2 / "vocab.bpe", original / "merges.txt")
    for folder in (tmp_path, original):
        back = read_hf_tokenizer(folder)
        assert back.mergeable_ranks == ours.mergeable_ranks and back.special_tokens == ours.special_tokens


def test_from_hf_folder_loads_into_our_gpt(trained, tmp_path):
    """--from-hf on an exported folder: a run folder whose checkpoint has our weights and tokenizer back."""
    r = subprocess.run([sys.executable, "-m", "train.export", "--from-hf", str(trained["hf_dir"]),
                        "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    model, tok, state, _ = load_for_inference(tmp_path / "run", torch.device("cpu"))
    original = trained["model"].state_dict()
    assert set(model.state_dict()) == set(original)
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k
    assert tok.mergeable_ranks == trained["tok"].mergeable_ranks
    assert tok.special_tokens == trained["tok"].special_tokens
    assert state["step"] == 0 and load_checkpoint(tmp_path / "run")["eos_id"] == tok.eot_token
    # and the in-memory reader gives the same model
    model2, _ = read_hf_folder(trained["hf_dir"])
    ids = torch.randint(0, model.config.vocab_size, (1, 20))
    assert torch.equal(our_logits(model, ids), our_logits(model2, ids))
    sample = subprocess.run([sys.executable, "-m", "train.sample", "--checkpoint", str(tmp_path / "run"),
                             "--prompt", "SELECT", "--max-new-tokens", "5", "--temperature", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert sample.returncode == 0 and sample.stdout.startswith("SELECT"), sample.stderr


def test_what_cannot_be_represented_is_refused(tmp_path, trained):
    # (our Tokenizer already refuses such a vocabulary; ranks from elsewhere are checked again here)
    no_bytes = SimpleNamespace(mergeable_ranks={b"a": 0, b"b": 1, b"ab": 2}, special_tokens={"<|endoftext|>": 3})
    with pytest.raises(ValueError, match="single-byte tokens"):
        vocab_and_merges(no_bytes)
    with pytest.raises(ValueError, match="embeddings"):
        write_hf_folder(tmp_path / "x", trained["model"].state_dict(),
                        GPTConfig(**{**trained["model"].config.__dict__, "vocab_size": 10}), trained["tok"])
    cfg = json.loads((trained["hf_dir"] / "config.json").read_text())
    for key, value in [("activation_function", "relu"), ("n_inner", 7), ("layer_norm_epsilon", 1e-6),
                       ("model_type", "llama"), ("tie_word_embeddings", False)]:
        with pytest.raises(ValueError, match="cannot load|model_type|GPT-2"):
            config_from_hf({**cfg, key: value})
    bad = tmp_path / "bad"
    shutil.copytree(trained["hf_dir"], bad)
    lines = (bad / "merges.txt").read_text().splitlines()
    (bad / "merges.txt").write_text("\n".join([lines[0]] + lines[1:][::-1]) + "\n")
    with pytest.raises(ValueError, match="order"):
        read_hf_tokenizer(bad)


@pytest.mark.parametrize("args, message", [
    (["--from-hf", "/nonexistent/folder", "--out", "/tmp/x"], "not a folder"),
    (["--checkpoint", "/nonexistent/run", "--out", "/tmp/x"], "does not exist"),
])
def test_cli_user_errors_are_one_line(args, message):
    r = subprocess.run([sys.executable, "-m", "train.export", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
