"""Trainer configuration: three dataclass sections (model, data, train) loaded from JSON.

    python -m train --config small                       # configs/small.json
    python -m train --config my.json --set train.lr=3e-4 model.n_layer=6

A config file holds any subset of the fields below; `--set section.field=value` overrides one field
(the value is read as JSON when it parses, else as a plain string). An unknown section or field, or a
value of the wrong type, is a ValueError that names it.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelSection:
    """gpt.model.GPTConfig fields; None takes the preset's value (vocab_size: the data's, rounded up)."""
    preset: str = "small"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    vocab_size: int | None = None
    dropout: float = 0.0
    bias: bool = True


@dataclass
class DataSection:
    dir: str = "data/processed/shakespeare"  # a folder written by `python -m data.prepare`
    train_split: str = "train"
    val_split: str = "val"
    pin_memory: bool = True           # CUDA: batches go through pinned host memory (an async copy, no stream sync)


@dataclass
class TrainSection:
    out_dir: str = "runs/default"     # log.jsonl, loss.png, checkpoints/
    batch_size: int = 16              # sequences per process per micro-step
    grad_accum: int = 1               # micro-steps per optimizer step
    max_steps: int = 1000
    max_seconds: float = 0.0          # stop at the first log step this long after step 1 (compile) ends; 0: none
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    lr_decay_steps: int = 0           # cosine decay ends here (0: max_steps)
    weight_decay: float = 0.1         # matrices only, never biases, LayerNorm gains or position tables
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0            # 0: no clipping
    ema_decay: float = 0.0            # 0: off; else keep an exponential moving average of the weights (see train/ema.py)
    dtype: str = "auto"               # auto (bf16 on GPUs that have it, else fp16; fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    device: str = "auto"              # auto | cpu | cuda
    seed: int = 1337
    log_interval: int = 10
    eval_interval: int = 200          # 0: only at the end
    eval_iters: int = 20
    ckpt_interval: int = 500          # 0: only at the end, -1: never
    keep_last: int = 3
    init_from: str = ""               # checkpoint to start from (fine-tuning): weights only
    resume: bool = False              # continue from the newest checkpoint in out_dir that verifies
    overwrite: bool = False           # a fresh run may replace (delete) the checkpoints already in out_dir
    progress: bool = True             # tqdm bar on rank 0
    peak_flops: float = 0.0           # per device, for MFU; 0: known GPU table, or measured on CPU
    threads: int = 0                  # torch CPU threads per process (0: (cores - 1) / local processes, at least 1)


@dataclass
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _section_class(name: str):
    return {"model": ModelSection, "data": DataSection, "train": TrainSection}[name]


def _coerce(path: str, value, annotation):
    """Check `value` against a field annotation (str, int, float, bool, or X | None)."""
    hint = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"config {path}: expected {hint.__name__}, got {value!r}")


def _apply(config: Config, path: str, value, from_cli: bool = False) -> None:
    section_name, _, key = path.partition(".")
    if section_name not in SECTIONS or not key:
        raise ValueError(f"unknown config key {path!r}: keys look like model.n_layer, data.dir, train.lr")
    section = getattr(config, section_name)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ValueError(f"unknown config key {path!r}; {section_name} has: {', '.join(fields)}")
    annotation = fields[key].type
    if from_cli and isinstance(value, str):
        # --set values: JSON when they parse (numbers, true/false, null), else the plain string
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        text_field = "str" in str(annotation) and "int" not in str(annotation) and "float" not in str(annotation)
        value = value if text_field and not isinstance(parsed, str) and parsed is not None else parsed
    setattr(section, key, _coerce(path, value, annotation))


def resolve_config_path(name: str) -> Path:
    """A JSON path, or the name of a preset in configs/ (with or without .json)."""
    p = Path(name)
    if p.is_file():
        return p
    preset = CONFIG_DIR / (name if name.endswith(".json") else f"{name}.json")
    if preset.is_file():
        return preset
    known = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.json")))
    raise ValueError(f"config {name!r} is neither a file nor a preset in {CONFIG_DIR} ({known})")


def load_config(name: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the JSON file or preset `name`, then each `section.field=value` override."""
    config = Config()
    if name:
        path = resolve_config_path(name)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"config file {path} must hold a JSON object with model/data/train sections")
        for section_name, values in raw.items():
            if section_name not in SECTIONS:
                raise ValueError(f"unknown config section {section_name!r} in {path}; use model, data, train")
            if not isinstance(values, dict):
                raise ValueError(f"config section {section_name!r} in {path} must be a JSON object")
            for key, value in values.items():
                _apply(config, f"{section_name}.{key}", value)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item!r}: write section.field=value, e.g. train.lr=3e-4")
        _apply(config, key.strip(), value, from_cli=True)
    validate(config)
    return config


def validate(config: Config) -> None:
    t = config.train
    for name in ("batch_size", "grad_accum", "max_steps", "log_interval", "eval_iters", "keep_last"):
        if getattr(t, name) <= 0:
            raise ValueError(f"config train.{name} must be positive, got {getattr(t, name)}")
    if t.ckpt_interval < -1:
        raise ValueError(f"config train.ckpt_interval must be >= -1, got {t.ckpt_interval}")
    for name in ("warmup_steps", "lr_decay_steps", "eval_interval", "threads", "max_seconds"):
        if getattr(t, name) < 0:
            raise ValueError(f"config train.{name} must be >= 0, got {getattr(t, name)}")
    if t.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise ValueError(f"config train.dtype must be auto, bf16, fp16 or fp32, not {t.dtype!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"config train.device must be auto, cpu or cuda, not {t.device!r}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ValueError(f"config train.ema_decay must be in [0, 1) (0: off), got {t.ema_decay}")
    if t.lr <= 0 or t.min_lr < 0 or t.min_lr > t.lr:
        raise ValueError(f"config needs 0 <= train.min_lr <= train.lr and train.lr > 0 (lr={t.lr}, min_lr={t.min_lr})")
    if config.model.preset not in _model_presets():
        raise ValueError(f"config model.preset {config.model.preset!r} is unknown; use one of "
                         f"{', '.join(_model_presets())}")


def _model_presets():
    from gpt.model import PRESETS

    return PRESETS
