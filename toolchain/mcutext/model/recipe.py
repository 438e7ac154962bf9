"""Training recipes: one TOML file per dataset under models/.

A recipe names the data, the tokenizer, the student's shape and the training budget. Unknown
keys and impossible values are errors that name the file and the key.

`base = "other"` makes a recipe a variant of `models/other.toml`: every table of the base is
taken, and the keys the variant sets replace the base's, key by key. A variant that sets no
`[teacher]` key and keeps the base's dataset shares the base's cached teacher
(build/teachers/<base>).

Paths in a recipe are relative to the folder of the file that names them, never to the
current directory: `dataset` (unless it is one of the named datasets, looked up in
MCUTEXT_DATA_DIR), `base = "x.toml"` (a name without .toml is a recipe under models/),
`objective.teacher` and folder entries of `objective.embed_texts`. They are stored absolute,
so a bundle finds its data from any working directory.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from ..text.datasets import NAMED_DATASETS
from ..text.encoding import EncodingConfig
from ..common.errors import McutextError
from ..text.tokenizer import TokenizerSpec


ARCHS = ("cnn", "fastgrnn", "prado")
HEADS = ("dense", "prototype")
POOLINGS = ("attention", "mean")
LR_SCHEDULES = ("constant", "cosine")
# embed_texts entry: the sentence encoder's whole-word vocabulary, one word per text
# (mcutext.train.sentence)
VOCAB_SOURCE = "vocab"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    # "cnn": the mcutext student; "fastgrnn", "prado": the baselines (mcutext.model.baselines,
    # configured by the [fastgrnn] / [prado] sections)
    arch: str = "cnn"
    embed_dim: int = 16
    conv_filters: int = 64
    conv_width: int = 3
    feature_dim: int = 32
    dropout: float = 0.2
    # share of whole words dropped from each training example (augmentation)
    word_dropout: float = 0.0
    # "dense": a trained linear head. "prototype": trained as a cosine classifier
    # (head_scale * cos(features - center, row)), exported as one unit-norm prototype per
    # class, head_scale * the mean direction of its training features around the center; the
    # same rule the device imprints new labels with (docs/personalization.md)
    head: str = "dense"
    head_scale: float = 16.0
    # activation of the features layer: "relu", or "linear" (keeps the directions a
    # prototype head and the sentence mapping use; docs/personalization.md)
    feature_activation: str = "relu"
    # head rows the firmware reserves for labels the owner adds on the device
    max_new_labels: int = 4
    # how the CNN's word states become one vector: "attention" (softmax of learned
    # per-word scores), or "mean" (every word present weighs the same, 1 / words; the
    # attention output is then that uniform weight; docs/robustness.md)
    pooling: str = "attention"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise McutextError(f"model.arch must be one of {', '.join(ARCHS)}, "
                               f"got '{self.arch}'")
        if self.feature_activation not in ("relu", "linear"):
            raise McutextError("model.feature_activation must be relu or linear, "
                               f"got '{self.feature_activation}'")
        if self.head not in HEADS:
            raise McutextError(f"model.head must be one of {', '.join(HEADS)}, "
                               f"got '{self.head}'")
        if self.pooling not in POOLINGS:
            raise McutextError(f"model.pooling must be one of {', '.join(POOLINGS)}, "
                               f"got '{self.pooling}'")
        if self.pooling != "attention" and self.arch != "cnn":
            raise McutextError(f"model.pooling = '{self.pooling}' needs model.arch = 'cnn'")
        if self.head != "dense" and self.arch != "cnn":
            raise McutextError(f"model.head = '{self.head}' needs model.arch = 'cnn'")


@dataclasses.dataclass(frozen=True)
class FastGRNNConfig:
    """FastGRNN baseline (model.arch = "fastgrnn"; docs/baselines.md). Uses model.embed_dim,
    feature_dim and dropout too."""

    hidden: int = 32
    w_rank: int = 0               # W = W1 W2 with this rank; 0 = full rank
    u_rank: int = 0               # U = U1 U2 with this rank; 0 = full rank
    zeta_init: float = 1.0
    nu_init: float = -4.0
    # EdgeML's compression: share of W's / U's entries kept by iterative hard thresholding
    # (EdgeML's sW / sU); 1 = dense, no thresholding
    keep_w: float = 1.0
    keep_u: float = 1.0
    trim_every: int = 15          # steps between hard thresholdings (EdgeML's trimlevel)


@dataclasses.dataclass(frozen=True)
class PradoConfig:
    """PRADO baseline (model.arch = "prado"; docs/baselines.md). Uses model.dropout too."""

    feature_size: int = 256       # ternary projection values per token (P)
    projection_seed: int = 0
    bottleneck: int = 64          # dense layer after the projection (values and attention)
    channels: int = 64            # per n-gram width
    ngram_widths: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self) -> None:
        widths = self.ngram_widths
        if not widths or len(widths) > 8 or not all(
                isinstance(w, int) and 1 <= w <= 9 for w in widths):
            raise McutextError(f"prado.ngram_widths must be 1 to 8 widths in [1, 9], "
                               f"got {list(widths)}")
        if len(set(widths)) != len(widths):
            raise McutextError(f"prado.ngram_widths has repeated widths: {list(widths)}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    # "constant", or "cosine": decayed to 0 over all steps of the run (mcutext.train.objective)
    lr_schedule: str = "constant"
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

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise McutextError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                               f"got '{self.lr_schedule}'")


# the [objective] section (mcutext.train.objective)
KD_LOSSES = ("kl", "mse")
ADV_SEARCHES = ("joint", "greedy", "codes")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    kd_weight: float = 0.0        # a
    temperature: float = 2.0      # T
    kd_loss: str = "kl"           # "kl": T^2 * KL of the softened outputs; "mse": logit MSE
    map_weight: float = 0.0       # b
    adv_weight: float = 0.0       # c
    fgm_epsilon: float = 0.5      # relative to each example's embedding norm
    adv_candidates: int = 4       # random perturbations per example; the worst one is kept
    adv_words: int = 2            # words edited per candidate (the attack budget we train for)
    # "joint": every candidate edits all adv_words words at once; "greedy": word by word, the
    # worst of adv_candidates edits of each word kept before the next (as the attacks search);
    # "codes" (robust encoding only): word by word, the worst of every code any one-edit
    # typo of any word reaches (exact, not sampled: the encoding makes the set small)
    adv_search: str = "joint"
    teacher: str = ""             # teacher folder; default build/<recipe>/teacher
    # d: sentence mapping. The features, through a training-only linear layer, follow the
    # pretrained encoder's sentence embedding (cosine; mcutext.train.sentence), on the training
    # texts and on the unlabelled texts of embed_texts (dataset names, or "vocab")
    embed_weight: float = 0.0
    embed_texts: tuple = ()

    def __post_init__(self) -> None:
        if self.kd_loss not in KD_LOSSES:
            raise McutextError(f"objective.kd_loss must be one of {', '.join(KD_LOSSES)}, "
                               f"got '{self.kd_loss}'")
        if self.adv_search not in ADV_SEARCHES:
            raise McutextError(f"objective.adv_search must be one of {', '.join(ADV_SEARCHES)}, "
                               f"got '{self.adv_search}'")

    @property
    def uses_sentence(self) -> bool:
        return self.embed_weight > 0

    @property
    def uses_teacher(self) -> bool:
        return self.kd_weight > 0 or self.map_weight > 0


TEACHER_KINDS = ("transformer", "bilstm")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """How the recipe's teacher is trained (mcutext.train.teacher; docs/teacher.md has the
    measurements behind the defaults)."""

    # "transformer": the pretrained MiniLM encoder, its top `tune_layers` layers fine-tuned;
    # "bilstm": MiniLM's frozen pretrained input embeddings under a BiLSTM trained from scratch
    # (no encoder layers run: a fraction of the cost, see docs/teacher.md)
    kind: str = "transformer"
    tune_layers: int = 2          # top encoder layers trained; 0 = frozen encoder, head only
    rnn_units: int = 256          # per direction, kind = "bilstm"
    max_len: int = 128            # wordpieces incl. [CLS] and [SEP]
    attn_hidden: int = 128        # width of the pooling scorer
    dropout: float = 0.1
    epochs: int = 4
    batch_size: int = 32
    head_lr: float = 1e-3
    encoder_lr: float = 5e-5      # for the tuned layers (AdamW, weight decay 0.01)
    seed: int = 1

    def __post_init__(self) -> None:
        if self.kind not in TEACHER_KINDS:
            raise McutextError(f"teacher.kind must be one of {', '.join(TEACHER_KINDS)}, "
                               f"got '{self.kind}'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """The transfer set the student learns from besides the labels (mcutext.train.distill): the
    training texts plus augmented variants labelled by the teacher. Used only when the
    objective uses a teacher."""

    # augmented variants per training text (0 = distil on the training texts only)
    copies: int = 0
    # per word: probability of dropping it / of replacing it with a nearby word (neighbours
    # in the teacher's input-embedding space)
    mask: float = 0.1
    replace: float = 0.1
    # probability that a variant is cut down to a random window of 1..ngram_max words
    ngram: float = 0.25
    ngram_max: int = 5
    seed: int = 1
    # batch size and epochs on the transfer set (it is many times bigger than the training
    # set); epochs 0 = train.epochs
    batch_size: int = 128
    epochs: int = 0


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
    teacher: TeacherConfig = TeacherConfig()
    distill: DistillConfig = DistillConfig()
    fastgrnn: FastGRNNConfig = FastGRNNConfig()
    prado: PradoConfig = PradoConfig()
    encoding: EncodingConfig = EncodingConfig()
    path: str = ""
    # the folder name of the cached teacher (build/teachers/<teacher_name>); "" = name
    teacher_name: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tokenizer"] = self.tokenizer.to_dict()  # a hashed spec without encoding/table keys
        d["eval"]["exclude_labels"] = list(self.eval.exclude_labels)
        d["train"]["drop_labels"] = list(self.train.drop_labels)
        d["prado"]["ngram_widths"] = list(self.prado.ngram_widths)
        d["objective"]["embed_texts"] = list(self.objective.embed_texts)
        return d


_RANGES = {
    ("model", "embed_dim"): (1, 256),
    ("model", "conv_filters"): (1, 512),
    ("model", "conv_width"): (1, 9),
    ("model", "feature_dim"): (1, 512),
    ("model", "dropout"): (0.0, 0.9),
    ("model", "word_dropout"): (0.0, 0.9),
    ("model", "head_scale"): (0.1, 1000.0),
    ("model", "max_new_labels"): (0, 255),
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
    ("objective", "embed_weight"): (0.0, 100.0),
    ("teacher", "tune_layers"): (0, 64),
    ("teacher", "rnn_units"): (1, 4096),
    ("teacher", "max_len"): (2, 512),
    ("teacher", "attn_hidden"): (1, 4096),
    ("teacher", "dropout"): (0.0, 0.9),
    ("teacher", "epochs"): (1, 100),
    ("teacher", "batch_size"): (1, 1024),
    ("teacher", "head_lr"): (1e-7, 1.0),
    ("teacher", "encoder_lr"): (0.0, 1.0),
    ("teacher", "seed"): (0, 2**31 - 1),
    ("distill", "copies"): (0, 200),
    ("distill", "mask"): (0.0, 0.9),
    ("distill", "replace"): (0.0, 0.9),
    ("distill", "ngram"): (0.0, 1.0),
    ("distill", "ngram_max"): (1, 512),
    ("distill", "seed"): (0, 2**31 - 1),
    ("distill", "batch_size"): (1, 4096),
    ("distill", "epochs"): (0, 1000),
    ("fastgrnn", "hidden"): (1, 512),
    ("fastgrnn", "w_rank"): (0, 512),
    ("fastgrnn", "u_rank"): (0, 512),
    ("fastgrnn", "zeta_init"): (-20.0, 20.0),
    ("fastgrnn", "nu_init"): (-20.0, 20.0),
    ("fastgrnn", "keep_w"): (0.01, 1.0),
    ("fastgrnn", "keep_u"): (0.01, 1.0),
    ("fastgrnn", "trim_every"): (1, 100000),
    ("prado", "feature_size"): (1, 4096),
    ("prado", "projection_seed"): (0, 2**32 - 1),
    ("prado", "bottleneck"): (1, 1024),
    ("prado", "channels"): (1, 1024),
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
        default = getattr(cls(), key)
        # TOML's true/false are not numbers here (Python's bool is an int)
        wrong_bool = isinstance(value, bool) and not isinstance(default, bool)
        if default is not None and (wrong_bool or not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)) and not (
                isinstance(default, tuple) and isinstance(value, list))):
            raise McutextError(f"{path}: '{name}.{key}' must be {type(default).__name__}, "
                               f"got {type(value).__name__}")
        if isinstance(value, list):
            item = type(default[0]) if default else str
            if not all(isinstance(v, item) and not (isinstance(v, bool) and item is not bool)
                       for v in value):
                raise McutextError(f"{path}: '{name}.{key}' must be a list of {item.__name__}")
        rng = _RANGES.get((name, key))
        if rng and not rng[0] <= value <= rng[1]:
            raise McutextError(
                f"{path}: '{name}.{key}' = {value} is out of range [{rng[0]}, {rng[1]}]")
    for key in ("exclude_labels", "drop_labels", "ngram_widths", "embed_texts"):
        if key in sec and isinstance(sec[key], list):
            sec = dict(sec, **{key: tuple(sec[key])})
    try:
        return cls(**sec)
    except McutextError as e:
        raise McutextError(f"{path}: {e}") from None


TABLES = ("tokenizer", "model", "train", "eval", "objective", "teacher", "distill", "fastgrnn",
          "prado", "encoding")
MAX_BASE_DEPTH = 4


def _recipe_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = models_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in models_dir().glob("*.toml")))
            raise McutextError(f"unknown recipe '{name_or_path}': no {path} (known: {known})",
                               hint="a recipe file of your own is named by its path, "
                                    "ending in .toml")
    elif relative_to is not None:
        path = _beside(relative_to, str(path))
    if not path.is_file():
        where = f", relative to the folder of {relative_to}" if relative_to is not None else ""
        raise McutextError(f"{path.absolute()}: no such recipe file{where}")
    return path


def _beside(recipe_file: Path, name: str) -> Path:
    """`name` resolved against the recipe file's folder (an absolute name stays as it is)."""
    return Path(os.path.normpath(recipe_file.absolute().parent / name))


def _resolve_paths(raw: dict, path: Path) -> None:
    """The recipe's path fields made absolute against its own folder (in place)."""
    def resolve(v):
        return str(_beside(path, v)) if isinstance(v, str) and v else v

    if "dataset" in raw and raw["dataset"] not in NAMED_DATASETS:
        raw["dataset"] = resolve(raw.get("dataset"))
    obj = raw.get("objective")
    if isinstance(obj, dict):
        if "teacher" in obj:
            obj["teacher"] = resolve(obj["teacher"])
        if isinstance(obj.get("embed_texts"), list):
            obj["embed_texts"] = [v if v in NAMED_DATASETS or v == VOCAB_SOURCE else resolve(v)
                                  for v in obj["embed_texts"]]


def _read_raw(path: Path, depth: int = 0) -> tuple[dict, str]:
    """The recipe's tables with its base's merged in, and the name of the recipe whose teacher
    it uses."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise McutextError(f"{path}: not valid TOML ({e})") from None
    allowed = {"name", "dataset", "base", *TABLES}
    unknown = set(raw) - allowed
    if unknown:
        raise McutextError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(sorted(allowed))})")
    for table in TABLES:
        if table in raw and not isinstance(raw[table], dict):
            raise McutextError(f"{path}: [{table}] must be a table")
    _resolve_paths(raw, path)
    teacher_name = raw.get("name") if isinstance(raw.get("name"), str) else ""
    if "base" not in raw:
        return raw, teacher_name
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise McutextError(f"{path}: 'base' must be the name of a recipe")
    if depth >= MAX_BASE_DEPTH:
        raise McutextError(f"{path}: recipes based on each other more than {MAX_BASE_DEPTH} "
                           "deep (a cycle?)")
    try:
        base_path = _recipe_path(base, path)
    except McutextError as e:
        raise McutextError(f"{path}: base: {e}") from None
    base_raw, base_teacher = _read_raw(base_path, depth + 1)
    merged = {k: v for k, v in base_raw.items() if k not in TABLES}
    merged.update({k: v for k, v in raw.items() if k not in TABLES})
    for table in TABLES:
        if table in base_raw or table in raw:
            merged[table] = {**base_raw.get(table, {}), **raw.get(table, {})}
    if "teacher" not in raw and merged.get("dataset") == base_raw.get("dataset"):
        teacher_name = base_teacher
    return merged, teacher_name


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load `models/<name>.toml` or a path to a recipe file (with its base, if it names one)."""
    path = _recipe_path(name_or_path)
    raw, teacher_name = _read_raw(path)
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
        teacher=_section(path, raw, "teacher", TeacherConfig),
        distill=_section(path, raw, "distill", DistillConfig),
        fastgrnn=_section(path, raw, "fastgrnn", FastGRNNConfig),
        prado=_section(path, raw, "prado", PradoConfig),
        encoding=_section(path, raw, "encoding", EncodingConfig),
        path=str(path),
        teacher_name=teacher_name if teacher_name != raw["name"] else "",
    )


def recipe_from_dict(r: dict) -> Recipe:
    """The inverse of Recipe.to_dict (as stored in a bundle's manifest)."""
    def tup(d: dict, *keys) -> dict:
        return {**d, **{k: tuple(d[k]) for k in keys if k in d}}
    try:
        return Recipe(name=r["name"], dataset=r["dataset"],
                      tokenizer=TokenizerSpec.from_dict(r["tokenizer"]),
                      model=ModelConfig(**r["model"]),
                      train=TrainConfig(**tup(r["train"], "drop_labels")),
                      eval=EvalConfig(**tup(r.get("eval", {}), "exclude_labels")),
                      objective=ObjectiveConfig(**tup(r.get("objective", {}), "embed_texts")),
                      teacher=TeacherConfig(**r.get("teacher", {})),
                      distill=DistillConfig(**r.get("distill", {})),
                      fastgrnn=FastGRNNConfig(**r.get("fastgrnn", {})),
                      prado=PradoConfig(**tup(r.get("prado", {}), "ngram_widths")),
                      encoding=EncodingConfig(**r.get("encoding", {})),
                      path=r.get("path", ""), teacher_name=r.get("teacher_name", ""))
    except (KeyError, TypeError) as e:
        raise McutextError(f"the stored recipe is incomplete or unknown ({e})") from None


def project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def models_dir() -> Path:
    return project_root() / "models"
