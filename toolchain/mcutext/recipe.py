"""Training recipes: one TOML file per dataset under models/.

A recipe names the data, the tokenizer, the student's shape and the training budget. Unknown
keys and impossible values are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from .errors import McutextError
from .objective import ObjectiveConfig
from .tokenizer import TokenizerSpec


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 16
    conv_filters: int = 64
    conv_width: int = 3
    feature_dim: int = 32
    dropout: float = 0.2
    # share of whole words dropped from each training example (augmentation)
    word_dropout: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    # decoupled weight decay (AdamW); 0 = plain Adam
    weight_decay: float = 0.0
    # label smoothing of the cross-entropy; it also bounds the logits' range, which keeps
    # the int8 logits fine-grained when there are many classes
    label_smoothing: float = 0.0
    seed: int = 1
    # examples drawn from train for the int8 calibration (representative dataset)
    calibration_examples: int = 300
    # when the dataset has no dev split, this share of train is held out for validation
    dev_fraction: float = 0.1
    # labels left out of training altogether (e.g. intents the owner teaches on the device);
    # their examples are also left out of the bundle's own evaluation
    drop_labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    # labels left out of accuracy and reported on their own (e.g. clinc150's out-of-scope)
    exclude_labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    dataset: str
    tokenizer: TokenizerSpec
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    objective: ObjectiveConfig = ObjectiveConfig()
    path: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eval"]["exclude_labels"] = list(self.eval.exclude_labels)
        d["train"]["drop_labels"] = list(self.train.drop_labels)
        return d


_RANGES = {
    ("model", "embed_dim"): (1, 256),
    ("model", "conv_filters"): (1, 512),
    ("model", "conv_width"): (1, 9),
    ("model", "feature_dim"): (1, 512),
    ("model", "dropout"): (0.0, 0.9),
    ("model", "word_dropout"): (0.0, 0.9),
    ("train", "epochs"): (1, 1000),
    ("train", "batch_size"): (1, 4096),
    ("train", "learning_rate"): (1e-6, 1.0),
    ("train", "weight_decay"): (0.0, 1.0),
    ("train", "label_smoothing"): (0.0, 0.5),
    ("train", "seed"): (0, 2**31 - 1),
    ("train", "calibration_examples"): (1, 100000),
    ("train", "dev_fraction"): (0.01, 0.5),
    ("objective", "kd_weight"): (0.0, 1.0),
    ("objective", "temperature"): (0.1, 20.0),
    ("objective", "map_weight"): (0.0, 100.0),
    ("objective", "adv_weight"): (0.0, 100.0),
    ("objective", "fgm_epsilon"): (0.0, 10.0),
    ("objective", "adv_candidates"): (1, 64),
    ("objective", "adv_words"): (1, 64),
}


def _section(path: Path, raw: dict, name: str, cls):
    sec = raw.get(name, {})
    if not isinstance(sec, dict):
        raise McutextError(f"{path}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in sec.items():
        if key not in fields:
            raise McutextError(f"{path}: unknown key '{name}.{key}' "
                               f"(known: {', '.join(sorted(fields))})")
        default = getattr(cls(), key) if cls is not TokenizerSpec else None
        if default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)) and not (
                isinstance(default, tuple) and isinstance(value, list)):
            raise McutextError(f"{path}: '{name}.{key}' must be {type(default).__name__}, "
                               f"got {type(value).__name__}")
        rng = _RANGES.get((name, key))
        if rng and not rng[0] <= value <= rng[1]:
            raise McutextError(
                f"{path}: '{name}.{key}' = {value} is out of range [{rng[0]}, {rng[1]}]")
    for key in ("exclude_labels", "drop_labels"):
        if key in sec and isinstance(sec[key], list):
            sec = dict(sec, **{key: tuple(sec[key])})
    try:
        return cls(**sec)
    except McutextError as e:
        raise McutextError(f"{path}: {e}") from None


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load `models/<name>.toml` or a path to a recipe file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = models_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in models_dir().glob("*.toml")))
            raise McutextError(f"unknown recipe '{name_or_path}' (known: {known})")
    if not path.is_file():
        raise McutextError(f"{path}: no such recipe file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise McutextError(f"{path}: not valid TOML ({e})") from None
    allowed = {"name", "dataset", "tokenizer", "model", "train", "eval", "objective"}
    unknown = set(raw) - allowed
    if unknown:
        raise McutextError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(sorted(allowed))})")
    for key in ("name", "dataset"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise McutextError(f"{path}: '{key}' must be a non-empty string")
    return Recipe(
        name=raw["name"],
        dataset=raw["dataset"],
        tokenizer=_section(path, raw, "tokenizer", TokenizerSpec),
        model=_section(path, raw, "model", ModelConfig),
        train=_section(path, raw, "train", TrainConfig),
        eval=_section(path, raw, "eval", EvalConfig),
        objective=_section(path, raw, "objective", ObjectiveConfig),
        path=str(path),
    )


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    return project_root() / "models"
