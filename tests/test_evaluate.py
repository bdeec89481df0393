"""train.evaluate: batched greedy decoding feeds the right prompt to the right example (an oracle model
that answers from a lookup table scores exactly what it should), and the CLI writes a JSON report and a
table for a real (untrained) checkpoint, with one-line errors for user mistakes."""
import dataclasses
import json

import pytest
import torch

from text2sql import prepare
from text2sql.prepare import load_examples
from text2sql.prompt import SQL_END_TOKEN, fit_and_encode_prompt, special_token_ids
from text2sql import evaluate


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    assert prepare.main(["--source", "synthetic", "--out", str(out), "--vocab-size", "600", "--block-size", "128",
                         "--synthetic-databases", "6", "--synthetic-train-per-db", "20", "--synthetic-eval-per-db", "12"]) == 0
    from gpt.tokenizer import Tokenizer

    meta = json.loads((out / "meta.json").read_text())
    return out, Tokenizer.load(str(out / meta["tokenizer"]))


class OracleModel(torch.nn.Module):
    """Answers each prompt with the SQL a lookup table holds for it, token by token, through both of
    gpt.generate's paths: GPT.generate (a batch of one prompt length) and the forward pass with a left-padded
    KV cache (mixed lengths). In the cache path every slot it writes holds the row's prompt number (keys)
    and the batch's padded prompt length (values), so a row that moves when others finish
    (KVCache.drop) still finds its own answer: a prompt fed to the wrong row gets a wrong answer."""

    def __init__(self, answers: dict, block_size: int, vocab_size: int):
        super().__init__()
        self.answers = answers
        self.prompts = list(answers)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"block_size": block_size, "n_layer": 1, "n_head": 1, "n_embd": 1,
                                          "vocab_size": vocab_size})()
        self.batch_sizes = []
        self.stop_id = None

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_ids=(), generator=None,
                 **_):
        self.batch_sizes.append(idx.shape[0])
        stop_id = min(stop_ids)
        rows = [self.answers[tuple(r)] for r in idx.tolist()]
        for step in range(max_new_tokens):
            out = [r[step] if step < len(r) else stop_id for r in rows]
            yield torch.tensor(out)[:, None]
            if all(step >= len(r) - 1 for r in rows):
                return

    def forward(self, idx, cache):
        B, T = idx.shape
        if cache.length == 0:  # the prompts: which one each row holds, written into every slot
            self.batch_sizes.append(B)
            pad = cache.pad.tolist() if cache.pad is not None else [0] * B
            key = torch.tensor([float(self.prompts.index(tuple(r[p:]))) for r, p in zip(idx.tolist(), pad)])
            width = torch.full((B,), float(T))
        else:  # one new token per row: read the row's prompt back from its last slot
            key, width = cache.k[0, :, 0, cache.length - 1, 0], cache.v[0, :, 0, cache.length - 1, 0]
        cache.append(0, key.view(B, 1, 1, 1).expand(B, 1, T, 1), width.view(B, 1, 1, 1).expand(B, 1, T, 1))
        cache.length += T
        logits = torch.zeros(B, 1, self.config.vocab_size)
        for r in range(B):
            answer = self.answers[self.prompts[int(key[r])]]
            step = cache.length - int(width[r])  # tokens this row has generated (and will write next)
            logits[r, 0, answer[step] if step < len(answer) else self.stop_id] = 1.0
        return logits


@pytest.mark.parametrize("block", [128, 512])
def test_oracle_scores_exactly(prepared, block):
    """block 128 cuts every prompt to one length (GPT.generate's path); 512 keeps their own (padded batches)."""
    out, tok = prepared
    examples, meta = load_examples(out, "val")
    end = special_token_ids(tok)[SQL_END_TOKEN]
    answers, expected, kept = {}, [], []
    for e in examples:  # two questions cut to the same prompt (block 128) would make the oracle ambiguous
        prompt = tuple(fit_and_encode_prompt(tok, e.schema, e.question, block, meta["max_sql_tokens"], e.db_path))
        if prompt not in answers:
            answers[prompt] = None
            kept.append(e)
    examples, answers = kept, {}
    assert len(examples) >= 8
    for i, e in enumerate(examples):
        prompt = tuple(fit_and_encode_prompt(tok, e.schema, e.question, block, meta["max_sql_tokens"], e.db_path))
        wrong = i % 3 == 0  # every third answer is the wrong query
        sql = "SELECT COUNT(*) FROM sqlite_master WHERE 0" if wrong else e.sql
        answers[prompt] = tok.encode_ordinary(sql) + [end]
        expected.append(not wrong)
    model = OracleModel(answers, block, tok.n_vocab)
    model.stop_id = end
    report = evaluate.evaluate(model, tok, examples, block, meta["max_sql_tokens"], batch_size=4, progress=False)
    got = [r["exec_match"] for r in report["examples"]]
    assert got == expected
    assert report["summary"]["execution_accuracy"] == pytest.approx(sum(expected) / len(expected))
    assert report["summary"]["valid_sql_rate"] == 1.0
    assert max(model.batch_sizes) <= 4 and len(model.batch_sizes) < len(examples)  # batched by prompt length
    lengths = {len(p) for p in answers}
    assert len(lengths) == 1 if block == 128 else len(lengths) > len(model.batch_sizes)  # (mixed-length batches)
    assert sum(r["exact_match"] for r in report["examples"]) == sum(expected)


def save_untrained_checkpoint(path, tok, block_size=128):
    from gpt.model import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=block_size, vocab_size=-(-tok.n_vocab // 64) * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": GPT(cfg).state_dict(), "model_config": dataclasses.asdict(cfg), "step": 0,
                "tokenizer": None}, path)


def test_cli_writes_report_and_table(prepared, tmp_path, capsys):
    out, tok = prepared
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt_0000000.pt"
    save_untrained_checkpoint(ckpt, tok)
    report_path = tmp_path / "report.json"
    rc = evaluate.main(["--checkpoint", str(tmp_path / "run"), "--data", str(out), "--split", "test_domains", "--limit", "6",
                        "--max-new-tokens", "12", "--out", str(report_path), "--show", "2", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "exec acc" in printed and "execution accuracy" in printed and "Q: " in printed
    report = json.loads(report_path.read_text())
    assert report["split"] == "test_domains" and report["summary"]["n"] == 6 and len(report["examples"]) == 6
    for r in report["examples"]:
        assert set(r) >= {"question", "gold", "pred", "exec_match", "exact_match", "valid", "shape"}
    assert 0.0 <= report["summary"]["execution_accuracy"] <= 1.0 and "by_shape" in report["summary"]


def test_cli_user_mistakes_are_one_line(prepared, tmp_path, capsys):
    out, tok = prepared
    assert evaluate.main(["--checkpoint", str(tmp_path / "none"), "--data", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert evaluate.main(["--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path)]) == 2
    assert "not prepared by a text-to-SQL source" in capsys.readouterr().err
    assert evaluate.main(["--checkpoint", str(tmp_path / "none"), "--data", str(out), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
