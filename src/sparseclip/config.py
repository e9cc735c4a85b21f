"""Configuration: nested dataclasses, loaded from YAML presets, overridable with ``key.sub=value``.

Presets ship inside the package (``sparseclip/configs/*.yaml``) and are resolved by name, like
OpenCLIP's model configs. Every field can be overridden from the command line. Unknown keys and
invalid values raise :class:`ConfigError` with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem, described in one line that names the offending key."""


_CKPT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class HeadConfig:
    """The head put after both towers (the same kind in both)."""

    kind: str = "relu"  # a registered head kind (sparseclip.model.heads.HEADS): relu | dense | linear_wide | topk
    expansion: int = 32  # wide dim = expansion * embed_dim (relu, linear_wide, topk)
    placement: str = "replace"  # replace: tower width -> k*D ; append: after the usual D projection
    bias: bool = False
    rep_relu: bool = False  # ReLU forward, GELU gradient backward (NCL's RepReLU)
    topk: int = 64  # K for kind=topk
    # what the head does to a tower feature before projecting it: none | center (subtract the training data's
    # running mean) | standardize (also divide by its running std). The statistics are buffers learned from the
    # training batches (saved with the head, frozen at evaluation); see docs/pretrained.md (sparsity levers)
    input_norm: str = "none"
    # the wide heads' starting weights: normal (OpenCLIP's, std in_dim**-0.5) | data (each unit aimed at one
    # random training pair in both heads, firing on init_rate of the training inputs; frozen towers on cached
    # features only; see sparseclip.train.dictionary)
    init: str = "normal"
    init_rate: float = 0.01  # model.head.init=data and train.resample_every: each aimed unit's firing rate
    # settings of a head kind of one's own (e.g. a JumpReLU head's initial threshold), validated by the kind
    options: dict = field(default_factory=dict)

    def validate(self) -> None:
        from .model.heads import HEADS, INPUT_NORMS  # the registry (imported here: model imports config)

        _choice("model.head.kind", self.kind, HEADS.names())
        HEADS.get(self.kind).check_config(self)
        _choice("model.head.input_norm", self.input_norm, INPUT_NORMS)
        _choice("model.head.placement", self.placement, ("replace", "append"))
        _positive("model.head.expansion", self.expansion)
        _positive("model.head.topk", self.topk)
        _choice("model.head.init", self.init, ("normal", "data"))
        if not 0 < self.init_rate < 1:
            raise ConfigError(f"model.head.init_rate: must be in (0, 1), got {self.init_rate}")
        if self.init == "data" and self.input_norm != "none":
            raise ConfigError("model.head.init=data: aims units at raw tower features; use model.head.input_norm=none")


@dataclass
class ModelConfig:
    """Towers (OpenCLIP vision/text configs or a named OpenCLIP model) plus the head."""

    embed_dim: int = 128
    vision_cfg: dict = field(default_factory=dict)
    text_cfg: dict = field(default_factory=dict)
    openclip_name: str = ""  # if set, towers come from this OpenCLIP model config (vision/text_cfg ignored)
    head: HeadConfig = field(default_factory=HeadConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    logit_scale_max: float = 100.0  # the cap on exp(logit_scale); paper: Sparse 50, Sparse+ 40
    # start logit_scale at the cap (ln logit_scale_max) instead of init_logit_scale: makes the cap the
    # temperature the model trains at, so the cap is a sparsity knob even when the scale barely moves
    init_at_cap: bool = False
    # a named pretrained tower pair resolved offline by the library (see sparseclip.model.pretrained): lite
    towers: str = ""
    # pretrained weights for the towers: a local OpenCLIP-layout checkpoint (.safetensors, or .bin/.pt/.pth,
    # never unpickled), or with openclip_name an OpenCLIP pretrained tag already in the local cache
    pretrained: str = ""
    freeze_image: bool = False  # LiT style: image tower gets no gradients, stays in eval mode
    freeze_text: bool = False
    # training a frozen tower that has no pretrained weights (model.pretrained / model.towers) is refused:
    # the heads would learn on random features. Set this to do it on purpose (tests, controls).
    allow_random_frozen: bool = False
    # per-channel image normalisation; empty = CLIP's. Pretrained timm towers usually want ImageNet's:
    # image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225]
    image_mean: list = field(default_factory=list)
    image_std: list = field(default_factory=list)

    def validate(self) -> None:
        _positive("model.embed_dim", self.embed_dim)
        for key, vals in (("model.image_mean", self.image_mean), ("model.image_std", self.image_std)):
            if vals and (len(vals) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                   for v in vals)):
                raise ConfigError(f"{key}: expected 3 numbers (R, G, B) or [], got {vals!r}")
        if bool(self.image_mean) != bool(self.image_std):
            raise ConfigError("model.image_mean / model.image_std: set both or neither")
        if any(v <= 0 for v in self.image_std):
            raise ConfigError(f"model.image_std: each must be > 0, got {self.image_std!r}")
        if self.pretrained and not self.pretrained.endswith(_CKPT_SUFFIXES) and not (
                self.openclip_name and "/" not in self.pretrained and "." not in self.pretrained):
            raise ConfigError(f"model.pretrained: expected a .safetensors/.bin/.pt/.pth file (or, with "
                              f"model.openclip_name, an OpenCLIP pretrained tag), got {self.pretrained!r}")
        if self.towers:
            from .model.pretrained import TOWER_PAIRS  # the registry (imported here: model imports config)

            _choice("model.towers", self.towers, TOWER_PAIRS.names())
            if self.openclip_name or self.pretrained:
                raise ConfigError("model.towers: a named tower pair brings its own towers and weights; "
                                  "unset model.openclip_name and model.pretrained")
        _positive("model.logit_scale_max", self.logit_scale_max)
        self.head.validate()

    @property
    def has_pretrained_towers(self) -> bool:
        """Whether the towers start from pretrained weights (a named pair or ``model.pretrained``)."""
        return bool(self.towers or self.pretrained)

    def check_frozen_towers(self) -> None:
        """Refuse to train heads on frozen towers that were never trained (unless ``allow_random_frozen``)."""
        if (self.freeze_image or self.freeze_text) and not self.has_pretrained_towers \
                and not self.allow_random_frozen:
            key = "model.freeze_image" if self.freeze_image else "model.freeze_text"
            raise ConfigError(f"{key}: the frozen tower has no pretrained weights, so the heads would learn on "
                              "random features; set model.towers (e.g. lite) or model.pretrained, or "
                              "model.allow_random_frozen=true to do it on purpose")


@dataclass
class LossConfig:
    l1_coef: float = 0.0  # L1 penalty on the L2-normalised codes (paper's rejected alternative)
    # a departure for ReLU heads: units that fire on no input of the batch are pushed up on the dead_aux_rate of
    # the batch where they are closest to firing (loss.dead_unit_push), with this coefficient (0 = off)
    dead_aux: float = 0.0
    dead_aux_rate: float = 0.01
    # distributed semantics as OpenCLIP's flags; True/True gives gradients equal to one big batch
    local_loss: bool = True
    gather_with_grad: bool = True
    memory_efficient: bool = False  # ChunkedClipLoss: same loss/gradients, features never gathered
    chunk_size: int = 0  # rows per streamed chunk for memory_efficient (0 = automatic)

    def validate(self) -> None:
        if self.l1_coef < 0:
            raise ConfigError(f"loss.l1_coef: must be >= 0, got {self.l1_coef}")
        if self.dead_aux < 0 or not 0 < self.dead_aux_rate <= 1:
            raise ConfigError(f"loss.dead_aux must be >= 0 and loss.dead_aux_rate in (0, 1], got {self.dead_aux}, "
                              f"{self.dead_aux_rate}")
        if self.chunk_size < 0:
            raise ConfigError(f"loss.chunk_size: must be >= 0, got {self.chunk_size}")
        if self.memory_efficient and not (self.local_loss and self.gather_with_grad):
            raise ConfigError("loss.memory_efficient: needs loss.local_loss=true and loss.gather_with_grad=true")


@dataclass
class DataConfig:
    kind: str = "world"  # world (procedural, built in) | csv | wds
    image_size: int = 32
    context_length: int = 32
    train_seed: int = 0
    val_seed: int = 1
    max_objects: int = 3
    # world: distinct training scenes, read epoch by epoch in a seeded order as a CSV is; 0 = an endless stream
    # of new scenes. A finite pool lets frozen towers train on cached features (train.feature_cache)
    num_train: int = 0
    num_val: int = 1000  # validation images for evaluation
    num_probe_train: int = 2000  # training images for the linear probe
    # training inputs on which evaluation counts the dictionary's health (features active / dead per modality):
    # a finite training set whole, or a seeded sample of this many; a stream's first this many. 0 = a finite set
    # whole
    num_health: int = 20000
    workers: int = 0
    # real data (kind csv / wds), with OpenCLIP's conventions (see docs/data.md)
    train_data: str = ""  # CSV file, or shard pattern(s) joined with '::' ("a/{00000..00099}.tar::b/x.tar")
    csv_img_key: str = "filepath"  # image-path column (relative paths are relative to the CSV)
    csv_caption_key: str = "title"
    csv_separator: str = ","
    train_num_samples: int = 0  # wds: samples per epoch; 0 = from sizes.json / _info.json next to shards
    shuffle_buffer: int = 1000  # wds: sample shuffle buffer per worker (0 = no sample shuffling)
    max_bad_fraction: float = 0.1  # stop the run when more than this fraction of samples were bad
    bad_min_samples: int = 100  # ... judged only once this many samples were attempted

    def validate(self) -> None:
        from .data.sources import DATA_FORMATS  # the registry (imported here: data imports config)

        _choice("data.kind", self.kind, DATA_FORMATS.names())
        fmt = DATA_FORMATS.get(self.kind)
        if fmt.needs_path and not self.train_data:
            raise ConfigError(f"data.train_data: required for data.kind={self.kind} ({fmt.path_help})")
        if len(self.csv_separator) != 1:
            raise ConfigError(f"data.csv_separator: must be one character, got {self.csv_separator!r}")
        if self.train_num_samples < 0 or self.shuffle_buffer < 0:
            raise ConfigError("data.train_num_samples and data.shuffle_buffer: must be >= 0")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"data.max_bad_fraction: must be in [0, 1], got {self.max_bad_fraction}")
        if self.bad_min_samples < 1:
            raise ConfigError(f"data.bad_min_samples: must be >= 1, got {self.bad_min_samples}")
        _positive("data.image_size", self.image_size)
        _positive("data.context_length", self.context_length)
        if not 1 <= self.max_objects <= 3:
            raise ConfigError(f"data.max_objects: must be 1, 2 or 3, got {self.max_objects}")
        _positive("data.num_val", self.num_val)
        if not isinstance(self.num_health, int) or self.num_health < 0:
            raise ConfigError(f"data.num_health: must be >= 0, got {self.num_health!r}")
        if not isinstance(self.num_train, int) or self.num_train < 0:
            raise ConfigError(f"data.num_train: must be >= 0, got {self.num_train!r}")
        if self.workers < 0:
            raise ConfigError(f"data.workers: must be >= 0, got {self.workers}")


@dataclass
class TrainConfig:
    steps: int = 500
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup: int = 50
    schedule: str = "cosine"  # cosine (warmup, then cosine decay to 0, as OpenCLIP) | constant (warmup, then flat)
    grad_clip: float = 1.0  # 0 disables
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 0  # 0: only at the end (plus ckpt_fractions); these are pruned to the newest keep_last
    ckpt_fractions: list = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3])  # kept for training dynamics
    keep_last: int = 2  # step checkpoints kept besides the fraction checkpoints (>= 1)
    # a non-finite loss or gradient: stop (the run fails in one line, the newest checkpoint stays the last finite
    # one, no final/) | skip_step (that step's update is dropped and counted in log.jsonl)
    nonfinite: str = "stop"
    threads: int = 0  # torch threads; 0 = leave the default
    precision: str = "fp32"  # fp32 | bf16 | fp16
    accum_steps: int = 1  # micro-batches per step; the full-batch contrastive loss is kept (feature cache)
    grad_checkpointing: bool = False
    # learning-rate multiplier for the towers' parameters (fine-tuning pretrained towers gently); heads and
    # logit_scale use train.lr. 0 keeps the tower weights fixed (model.freeze_* also fixes batch-norm
    # statistics and enables the feature cache)
    tower_lr_scale: float = 1.0
    # a schedule for the cap (model.logit_scale_max): start at this cap and lower it geometrically to
    # model.logit_scale_max over the first logit_scale_max_anneal fraction of the steps (accuracy first, then
    # sparsity); the scale starts at this cap when model.init_at_cap. 0 = no schedule (the cap is fixed)
    logit_scale_max_start: float = 0.0
    logit_scale_max_anneal: float = 0.5
    # fine-tune only each tower's last N blocks (and the norms after them; embeddings and earlier blocks frozen),
    # at train.lr x tower_lr_scale; needs model.freeze_image=false and model.freeze_text=false. 0 = off
    tower_last_blocks: int = 0
    # dead-unit resampling (a departure from the paper's recipe, as SAE training does it): every this many steps,
    # until resample_until of the run, units firing on no cached training input of a modality are aimed afresh
    # at random training pairs (model.head.init_rate); frozen towers on cached features only. 0 = off
    resample_every: int = 0
    resample_until: float = 0.5
    compile: bool = False  # torch.compile the model
    # both towers frozen + CSV data: compute tower features once (run_dir/features.safetensors), train heads only
    feature_cache: bool = True
    device: str = "auto"  # auto | cpu | cuda
    tensorboard: bool = True
    progress: bool = True
    output_dir: str = "runs/run"

    def validate(self) -> None:
        _positive("train.steps", self.steps)
        _positive("train.batch_size", self.batch_size)
        if self.batch_size < 2:
            raise ConfigError("train.batch_size: contrastive training needs at least 2 pairs per batch")
        _positive("train.lr", self.lr)
        if self.warmup < 0:
            raise ConfigError(f"train.warmup: must be >= 0, got {self.warmup}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay: must be >= 0, got {self.weight_decay}")
        _choice("train.precision", self.precision, ("fp32", "bf16", "fp16"))
        _choice("train.schedule", self.schedule, ("cosine", "constant"))
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _positive("train.log_every", self.log_every)
        _positive("train.accum_steps", self.accum_steps)
        _positive("train.keep_last", self.keep_last)
        if self.resample_every < 0 or not 0 <= self.resample_until <= 1:
            raise ConfigError(f"train.resample_every must be >= 0 and train.resample_until in [0, 1], got "
                              f"{self.resample_every}, {self.resample_until}")
        if self.ckpt_every < 0:
            raise ConfigError(f"train.ckpt_every: must be >= 0 (0: no periodic checkpoints), got {self.ckpt_every}")
        if self.grad_clip < 0 or self.eps < 0 or self.threads < 0:
            raise ConfigError("train.grad_clip, train.eps and train.threads: must be >= 0 "
                              f"(got {self.grad_clip}, {self.eps}, {self.threads})")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError(f"train.beta1, train.beta2: must be in [0, 1), got {self.beta1}, {self.beta2}")
        _choice("train.nonfinite", self.nonfinite, ("stop", "skip_step"))
        if self.logit_scale_max_start < 0 or not 0 < self.logit_scale_max_anneal <= 1:
            raise ConfigError("train.logit_scale_max_start must be >= 0 (0: no schedule) and "
                              f"train.logit_scale_max_anneal in (0, 1]; got {self.logit_scale_max_start}, "
                              f"{self.logit_scale_max_anneal}")
        if self.tower_last_blocks < 0:
            raise ConfigError(f"train.tower_last_blocks: must be >= 0 (0: off), got {self.tower_last_blocks}")
        if not isinstance(self.tower_lr_scale, int | float) or self.tower_lr_scale < 0:
            raise ConfigError(f"train.tower_lr_scale: must be >= 0, got {self.tower_lr_scale!r}")
        for f in self.ckpt_fractions:
            if not isinstance(f, int | float) or not 0 < f <= 1:
                raise ConfigError(f"train.ckpt_fractions: each must be in (0, 1], got {f!r}")


@dataclass
class Config:
    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        self.model.validate()
        self.loss.validate()
        self.data.validate()
        self.train.validate()
        if self.train.tower_last_blocks and (self.model.freeze_image or self.model.freeze_text):
            raise ConfigError("train.tower_last_blocks: fine-tunes the towers' last blocks, so the towers cannot be "
                              "frozen; set model.freeze_image=false model.freeze_text=false")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


#: annotation string (``from __future__ import annotations``) -> the config section class it names
_SECTION_TYPES = {c.__name__: c for c in (ModelConfig, HeadConfig, LossConfig, DataConfig, TrainConfig)}


def fingerprint(data: dict) -> dict:
    """What makes two runs' configs the same computation: ``data`` (a ``Config.to_dict()``, possibly written by
    an older version) without the output folder and without fields at their default value, so a field added
    later (at a default that keeps the old behaviour) does not make finished runs look stale."""
    def strip(d: dict, defaults: dict, cls: type) -> dict:
        sections = {f.name: _SECTION_TYPES[f.type] for f in dataclasses.fields(cls) if f.type in _SECTION_TYPES}
        out = {}
        for k, v in d.items():
            if k in sections and isinstance(v, dict):  # a nested config section: compare field by field
                v = strip(v, defaults.get(k, {}), sections[k])
                if v:
                    out[k] = v
            elif k not in defaults or v != defaults[k]:  # a value (dict-valued fields compare whole)
                out[k] = v
        return out

    data = json.loads(json.dumps(data))  # a deep copy with JSON types (tuples -> lists)
    data.get("train", {}).pop("output_dir", None)
    return strip(data, json.loads(Config().to_json()), Config)


# ----------------------------------------------------------------------------------------------
# helpers


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}; got {value!r}")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}: must be a positive number, got {value!r}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check/convert ``value`` to the annotated type ``typ`` (int, float, bool, str, list, dict)."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        typ = [a for a in typing.get_args(typ) if a is not type(None)][0]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if typ is list or origin is list:
        if isinstance(value, list):
            return value
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    if typ is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return value


def _build(cls: type, data: dict, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise ConfigError(f"{full}: unknown key ({hint}known: {', '.join(sorted(names))})")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = _build(typ, value, full + ".")
        else:
            kwargs[key] = _coerce(full, value, typ)
    return cls(**kwargs)


def _merge(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files("sparseclip") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str, chain: tuple[str, ...] = ()) -> dict:
    if name_or_path in chain:
        raise ConfigError(f"extends cycle: {' -> '.join([*chain, name_or_path])}")
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {name_or_path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{name_or_path}: cannot read it ({type(e).__name__})") from None
    else:
        res = resources.files("sparseclip") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown config {name_or_path!r}: not a file and not a preset "
                f"(presets: {', '.join(preset_names())})"
            )
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{name_or_path}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: the top level must be a mapping")
    parent = data.pop("extends", None)
    if parent:
        data = _merge(_read_yaml(str(parent), (*chain, name_or_path)), data)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (values parsed as YAML scalars/lists) to a nested dict."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.steps=100")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {p} is not a section")
        node[parts[-1]] = _parse_value(raw)
    return data


SHRINK = {
    "train": {"steps": 4, "batch_size": 8, "warmup": 1, "log_every": 1, "ckpt_fractions": [0.5]},
    "data": {"num_val": 64, "num_probe_train": 64},
}


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None,
                shrink: bool = False) -> Config:
    """Load a preset or YAML file, apply ``key=value`` overrides, validate, return a :class:`Config`.

    ``shrink=True`` turns any config into a seconds-long smoke run (a handful of tiny steps).
    """
    data = _read_yaml(name_or_path) if name_or_path else {}
    if shrink:
        data = _merge(data, SHRINK)
    data = apply_overrides(data, overrides or [])
    given = _user_keys(name_or_path) | {item.partition("=")[0].strip() for item in overrides or []}
    return _follow_openclip_model(config_from_dict(data), given)


def _user_keys(name_or_path: str | None) -> set[str]:
    """The dotted keys the user set in their own config file (and the files of theirs it extends); a preset's
    values (a shipped preset, or one a user file extends) are defaults, not the user's choice."""
    if not name_or_path or not (Path(name_or_path).suffix in (".yaml", ".yml", ".json")
                                or Path(name_or_path).exists()):
        return set()
    data = yaml.safe_load(Path(name_or_path).read_text(encoding="utf-8")) or {}  # _read_yaml has checked it

    def flat(node: dict, prefix: str) -> set[str]:
        keys = set()
        for k, v in node.items():
            keys |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return keys

    parent = data.pop("extends", None)
    return flat(data, "") | _user_keys(str(parent) if parent else None)


def _follow_openclip_model(cfg: Config, given: set[str]) -> Config:
    """With ``model.openclip_name``, the data's image size and context length are the named model's (its
    positional embeddings fix both) and, with an OpenCLIP pretrained tag, the image mean/std are the tag's,
    whatever a preset said; a value the user set (``given``: command line or own config file) that differs from
    what the model needs is refused in one line naming that value."""
    if not cfg.model.openclip_name:
        return cfg
    import open_clip

    name = cfg.model.openclip_name
    known = open_clip.get_model_config(name)
    if known is None:
        raise ConfigError(f"model.openclip_name: unknown OpenCLIP model {name!r} (open_clip.list_models() names "
                          "them)")
    size = known.get("vision_cfg", {}).get("image_size", cfg.data.image_size)
    size = size[0] if isinstance(size, list | tuple) else size
    ctx = known.get("text_cfg", {}).get("context_length", 77)
    for key, need in (("data.image_size", size), ("data.context_length", ctx)):
        attr = key.split(".")[1]
        have = getattr(cfg.data, attr)
        if key in given and have != need:
            what = "its positional embedding is" if key == "data.image_size" else "its text tower's positions are"
            raise ConfigError(f"{key}={have}: {name} needs {need} ({what} for {need}); leave {key} unset")
        setattr(cfg.data, attr, int(need))
    tag = cfg.model.pretrained if not cfg.model.pretrained.endswith(_CKPT_SUFFIXES) else ""
    pre = {**known.get("preprocess_cfg", {}), **(open_clip.get_pretrained_cfg(name, tag) if tag else {})}
    if pre.get("mean") and pre.get("std") and not {"model.image_mean", "model.image_std"} & given:
        cfg.model.image_mean, cfg.model.image_std = list(pre["mean"]), list(pre["std"])
    return cfg


def config_from_dict(data: dict) -> Config:
    """Build and validate a :class:`Config` from a plain dict (e.g. a checkpoint's ``config.json``)."""
    return _build(Config, data, "").validate()
