"""Our GPT and tokenizer <-> the Hugging Face `transformers` GPT-2 format, without network and without
importing `transformers` (the files are plain JSON, text and safetensors).

    write_hf_folder(out_dir, state_dict, config, tokenizer)   # -> config.json, model.safetensors,
                                                              #    vocab.json, merges.txt, tokenizer_config.json
    model, tokenizer = read_hf_folder(folder)                 # a local GPT-2-format folder -> our GPT

The command line that reads our checkpoints is `python -m train.export` (train/ owns the checkpoint
format; this file only converts what it is given).

Weights. Our model is GPT-2's architecture with other names, and with nn.Linear where GPT-2 has its
Conv1D (y = x W + b with W stored (in, out)), so every matrix is transposed on the way:
    wte, wpe                      -> transformer.wte, transformer.wpe
    blocks.i.ln_1 / ln_2          -> transformer.h.i.ln_1 / ln_2
    blocks.i.attn.qkv  (3C, C)    -> transformer.h.i.attn.c_attn  (C, 3C)   q, k, v in the same order
    blocks.i.attn.proj (C, C)     -> transformer.h.i.attn.c_proj
    blocks.i.mlp.fc / mlp.proj    -> transformer.h.i.mlp.c_fc / c_proj
    ln_f                          -> transformer.ln_f
The LM head is tied to wte in both models, so it is not stored (tie_word_embeddings). GPT-2 always has
biases: a model trained with bias=False is written with zero biases (the same function). The activation
is GELU's tanh form ("gelu_new"), LayerNorm eps 1e-5, the attention scale 1/sqrt(head_dim): all GPT-2's.

Tokenizer. Both are byte-level BPE with GPT-2's pre-tokenizer pattern; the difference is how merges are
written. Ours (tiktoken's) has ranks: any two adjacent parts whose concatenation is a token merge, the
lowest-ranked result first. GPT-2's files list merge pairs in priority order. So merges.txt lists, for
every token in rank order, every split of it into two tokens (as transformers' own tiktoken converter
does); then the two algorithms make the same merges. What cannot be represented is refused with a
ValueError: a byte missing from the vocabulary (byte-level BPE needs all 256), ids beyond the model's
vocabulary, or (reading) merges whose order disagrees with the token ids.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from gpt.atomic_write import atomic_write
from gpt.model import GPT, GPTConfig
from gpt.tokenizer import GPT2_PATTERN, Tokenizer, _gpt2_byte_alphabet

WEIGHTS_FILE = "model.safetensors"
LAYER_NORM_EPS = 1e-5
# (our suffix, HF suffix, transpose) for the tensors of one block
_BLOCK_TENSORS = [
    ("ln_1.weight", "ln_1.weight", False), ("ln_1.bias", "ln_1.bias", False),
    ("attn.qkv.weight", "attn.c_attn.weight", True), ("attn.qkv.bias", "attn.c_attn.bias", False),
    ("attn.proj.weight", "attn.c_proj.weight", True), ("attn.proj.bias", "attn.c_proj.bias", False),
    ("ln_2.weight", "ln_2.weight", False), ("ln_2.bias", "ln_2.bias", False),
    ("mlp.fc.weight", "mlp.c_fc.weight", True), ("mlp.fc.bias", "mlp.c_fc.bias", False),
    ("mlp.proj.weight", "mlp.c_proj.weight", True), ("mlp.proj.bias", "mlp.c_proj.bias", False),
]
_TOP_TENSORS = [("wte.weight", "wte.weight"), ("wpe.weight", "wpe.weight"),
                ("ln_f.weight", "ln_f.weight"), ("ln_f.bias", "ln_f.bias")]


# ----------------------------------------------------------------------------------------------------
# Weights and config


def _clean(state_dict: dict) -> dict:
    """Drop the prefixes torch.compile ("_orig_mod.") and DDP ("module.") add to parameter names."""
    out = {}
    for k, v in state_dict.items():
        for prefix in ("_orig_mod.", "module."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _zero_bias(config: GPTConfig, name: str) -> torch.Tensor:
    """The bias GPT-2 needs where a bias=False model has none."""
    C = config.n_embd
    width = {"attn.qkv.bias": 3 * C, "mlp.fc.bias": 4 * C}.get(name, C)
    return torch.zeros(width)


def to_hf_state_dict(state_dict: dict, config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our GPT's state dict -> GPT2LMHeadModel's (contiguous fp32 tensors, lm_head left to the tie)."""
    sd = _clean(state_dict)
    out = {}

    def get(name):
        if name in sd:
            return sd[name]
        if name.endswith(".bias") and not config.bias:
            return _zero_bias(config, name.split(".", 2)[-1] if name.startswith("blocks.") else name)
        raise ValueError(f"the state dict has no {name!r}: not a text2sql-gpt GPT (keys: {sorted(sd)[:4]}...)")

    for ours, theirs in _TOP_TENSORS:
        out[f"transformer.{theirs}"] = get(ours)
    for i in range(config.n_layer):
        for ours, theirs, transpose in _BLOCK_TENSORS:
            t = get(f"blocks.{i}.{ours}")
            out[f"transformer.h.{i}.{theirs}"] = t.t() if transpose else t
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def from_hf_state_dict(hf: dict, config: GPTConfig) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's (or GPT2Model's, without the "transformer." prefix) state dict -> ours."""
    sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in hf.items()}
    out = {}

    def get(name):
        if name not in sd:
            raise ValueError(f"the GPT-2 weights have no {name!r} (found e.g. {sorted(sd)[:4]})")
        return sd[name]

    for ours, theirs in _TOP_TENSORS:
        out[ours] = get(theirs)
    for i in range(config.n_layer):
        for ours, theirs, transpose in _BLOCK_TENSORS:
            t = get(f"h.{i}.{theirs}")
            out[f"blocks.{i}.{ours}"] = t.t() if transpose else t
    if "lm_head.weight" in hf and not torch.equal(hf["lm_head.weight"], out["wte.weight"]):
        raise ValueError("lm_head.weight differs from wte.weight: our GPT ties the LM head to the embedding")
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def hf_config(config: GPTConfig, tokenizer: Tokenizer | None = None) -> dict:
    """config.json of GPT2LMHeadModel for our GPTConfig."""
    eos = tokenizer.eot_token if tokenizer is not None else None
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": 0.0,
        "initializer_range": 0.02, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": eos, "eos_token_id": eos, "torch_dtype": "float32",
    }


def config_from_hf(cfg: dict) -> GPTConfig:
    """GPTConfig of a GPT-2 config.json; a ValueError names anything our GPT cannot compute."""
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"model_type {cfg.get('model_type')!r} is not gpt2: only GPT-2's architecture loads")
    checks = [
        (cfg.get("activation_function", "gelu_new") in ("gelu_new", "gelu_pytorch_tanh"),
         f"activation_function {cfg.get('activation_function')!r} (ours is GELU's tanh form, gelu_new)"),
        (cfg.get("n_inner") in (None, 4 * cfg.get("n_embd", 0)), f"n_inner {cfg.get('n_inner')} (ours is 4 * n_embd)"),
        (abs(cfg.get("layer_norm_epsilon", LAYER_NORM_EPS) - LAYER_NORM_EPS) < 1e-12,
         f"layer_norm_epsilon {cfg.get('layer_norm_epsilon')} (ours is {LAYER_NORM_EPS})"),
        (cfg.get("scale_attn_weights", True), "scale_attn_weights false"),
        (not cfg.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx true"),
        (cfg.get("tie_word_embeddings", True), "tie_word_embeddings false (our LM head is the embedding)"),
    ]
    for ok, what in checks:
        if not ok:
            raise ValueError(f"cannot load this GPT-2 variant into our GPT: {what}")
    try:
        return GPTConfig(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                         block_size=cfg["n_positions"], vocab_size=cfg["vocab_size"], dropout=0.0, bias=True)
    except KeyError as e:
        raise ValueError(f"config.json lacks {e.args[0]!r}") from None


# ----------------------------------------------------------------------------------------------------
# Tokenizer


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's merge loop on `token`'s bytes using only the merges ranked below max_rank."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2-style vocab (token in GPT-2's printable byte alphabet -> id, special tokens included) and
    merge pairs in priority order, equivalent to the tokenizer's ranks (see the module docstring)."""
    ranks = tokenizer.mergeable_ranks
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"the tokenizer lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]}): "
                         f"byte-level BPE (GPT-2's format) needs all 256")
    alphabet = _gpt2_byte_alphabet()

    def text(b: bytes) -> str:
        return "".join(alphabet[x] for x in b)

    vocab = {text(tok): rank for tok, rank in ranks.items()}
    for special, token_id in tokenizer.special_tokens.items():
        if special in vocab and vocab[special] != token_id:
            raise ValueError(f"special token {special!r} is spelled like an ordinary token with another id")
        vocab[special] = token_id
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) < 2:
            continue
        splits = [(tok[:i], tok[i:]) for i in range(1, len(tok)) if tok[:i] in ranks and tok[i:] in ranks]
        # the split tiktoken itself reaches first, then the others (transformers' converter adds them all)
        parts = _bpe_parts(ranks, tok, rank)
        if len(parts) == 2:
            splits.sort(key=lambda s: (s != (parts[0], parts[1]), ranks[s[0]], ranks[s[1]]))
        else:
            splits.sort(key=lambda s: (ranks[s[0]], ranks[s[1]]))
        merges.extend((text(a), text(b)) for a, b in splits)
    return vocab, merges


def write_hf_tokenizer(out_dir, tokenizer: Tokenizer, model_max_length: int = 1024) -> list[Path]:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json for AutoTokenizer."""
    if tokenizer.pattern != GPT2_PATTERN:
        raise ValueError("only GPT-2's pre-tokenization pattern has a GPT-2-format tokenizer")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges(tokenizer)
    eos = tokenizer.eot_token
    eos_text = next((s for s, i in tokenizer.special_tokens.items() if i == eos), None)
    added = {str(i): {"content": s, "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False, "special": True}
             for s, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])}
    extra = [s for s in tokenizer.special_tokens if s != eos_text]
    tok_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": model_max_length,
                  "add_prefix_space": False, "add_bos_token": False, "errors": "replace",
                  "clean_up_tokenization_spaces": False, "added_tokens_decoder": added,
                  "bos_token": eos_text, "eos_token": eos_text, "unk_token": eos_text, "pad_token": None,
                  "additional_special_tokens": extra}
    special_map = {k: tok_config[k] for k in ("bos_token", "eos_token", "unk_token") if tok_config[k]}
    if extra:
        special_map["additional_special_tokens"] = extra
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, indent=0),
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        "tokenizer_config.json": json.dumps(tok_config, ensure_ascii=False, indent=1),
        "special_tokens_map.json": json.dumps(special_map, ensure_ascii=False, indent=1),
    }
    written = []
    for name, body in files.items():
        written.append(atomic_write(out / name, body.encode("utf-8")))
    return written


def read_hf_tokenizer(folder) -> Tokenizer:
    """Our Tokenizer from a GPT-2-format folder (vocab.json + merges.txt, special tokens from
    tokenizer_config.json's added_tokens_decoder or added_tokens.json). GPT-2's own files and the ones
    write_hf_tokenizer writes load; merges whose order disagrees with the ids are refused (ranks are
    merge priorities in tiktoken's algorithm)."""
    folder = Path(folder)
    vocab = _read_json_file(folder / "vocab.json")
    merges_path = folder / "merges.txt"
    if not merges_path.is_file():
        raise ValueError(f"{merges_path} not found: a GPT-2-format tokenizer needs vocab.json and merges.txt")
    specials: dict[str, int] = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        for token_id, entry in (_read_json_file(config_path).get("added_tokens_decoder") or {}).items():
            specials[entry["content"]] = int(token_id)
    if (folder / "added_tokens.json").is_file():
        specials.update({k: int(v) for k, v in _read_json_file(folder / "added_tokens.json").items()})
    byte_of = {ch: b for b, ch in _gpt2_byte_alphabet().items()}
    ranks: dict[bytes, int] = {}
    for token, token_id in vocab.items():
        if token in specials or (token.startswith("<|") and token.endswith("|>")):
            specials.setdefault(token, token_id)
            continue
        try:
            ranks[bytes(byte_of[ch] for ch in token)] = token_id
        except KeyError:
            raise ValueError(f"{folder / 'vocab.json'}: token {token!r} is not in GPT-2's byte alphabet") from None
    last = -1
    for lineno, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_path}:{lineno}: expected two tokens separated by a space, got {line!r}")
        merged = ranks.get(bytes(byte_of.get(ch, 0) for ch in parts[0] + parts[1]))
        if merged is None:
            raise ValueError(f"{merges_path}:{lineno}: the merge {line!r} makes a token that is not in vocab.json")
        if merged < last:
            raise ValueError(f"{merges_path}:{lineno}: merges are not in the order of the ids of their results; "
                             f"this tokenizer cannot be expressed as tiktoken-style ranks")
        last = merged
    return Tokenizer(ranks, specials, name=folder.name or "hf")


def _read_json_file(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


# ----------------------------------------------------------------------------------------------------
# Folders


def write_hf_folder(out_dir, state_dict: dict, config: GPTConfig, tokenizer: Tokenizer) -> list[Path]:
    """A folder that transformers loads with GPT2LMHeadModel.from_pretrained(out_dir) and
    AutoTokenizer.from_pretrained(out_dir)."""
    if tokenizer.n_vocab > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab} ids but the model only {config.vocab_size} "
                         f"embeddings: they were not trained together")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(state_dict, config)
    written = [atomic_write(out / WEIGHTS_FILE, _safetensors_bytes(tensors))]
    written.append(atomic_write(out / "config.json", json.dumps(hf_config(config, tokenizer), indent=1) + "\n"))
    eos = tokenizer.eot_token
    gen = {"bos_token_id": eos, "eos_token_id": eos, "_from_model_config": True}
    written.append(atomic_write(out / "generation_config.json", json.dumps(gen, indent=1) + "\n"))
    written += write_hf_tokenizer(out, tokenizer, model_max_length=config.block_size)
    return written


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata={"format": "pt"})


def read_hf_weights(folder) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors (or pytorch_model.bin, read with weights_only=True)."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / WEIGHTS_FILE))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"{folder} has neither {WEIGHTS_FILE} nor pytorch_model.bin (sharded weights are not supported)")


def read_hf_folder(folder) -> tuple[GPT, Tokenizer]:
    """(our GPT in eval mode on the CPU, our Tokenizer) from a local GPT-2-format folder; no network."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (give a local GPT-2-format folder; nothing is downloaded)")
    config = config_from_hf(_read_json_file(folder / "config.json"))
    model = GPT(config)
    model.load_state_dict(from_hf_state_dict(read_hf_weights(folder), config))
    tokenizer = read_hf_tokenizer(folder)
    if tokenizer.n_vocab > config.vocab_size:
        raise ValueError(f"{folder}: the tokenizer has {tokenizer.n_vocab} ids, the model {config.vocab_size}")
    return model.eval(), tokenizer


if __name__ == "__main__":
    print("the export command reads checkpoints, whose format train/ owns: run\n"
          "  python -m train.export --checkpoint RUN_OR_CKPT --out DIR     (to a transformers folder)\n"
          "  python -m train.export --from-hf DIR --out RUN                (a local GPT-2 folder -> our checkpoint)",
          file=sys.stderr)
    sys.exit(2)
