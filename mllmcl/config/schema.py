"""The typed shape of `params.yaml`: one model per section, every field typed, bounded where a bound applies and
documented (the description is what `mllmcl params show` prints). These models are the one source of defaults;
unknown keys are refused so that a misspelt key can never silently fall back to a default."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# `base` is the router's answer for "no expert"; `general` and `language` are the pretraining/regression suites.
RESERVED_TASKS = frozenset({"base", "general", "language"})
MAX_TASKS = 25  # the router answers with one letter per expert, Z being the base

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
MODULE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"
URL_PATTERN = r"^https?://"
REGISTRY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ModuleName = Annotated[str, Field(pattern=MODULE_NAME_PATTERN)]


class Section(BaseModel):
    """Every section refuses unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        """Lax parsing reads `true` as 1: `gate.max_prior_drop: true` must not become "any drop is fine"."""
        if isinstance(value, bool):
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and "bool" not in str(annotation):
                raise ValueError(f"{str(value).lower()} is a boolean, not a number or a name")
        return value


class DataConfig(Section):
    """Synthetic data of the embedded MLLM-CL-mini benchmark (generator specs in data/raw/<task>/spec.yaml)."""

    image_size: int = Field(64, ge=8, le=1024, description="side of the square RGB images, pixels")
    train_size: PositiveInt = Field(3000, description="generated training records per task")
    test_size: PositiveInt = Field(200, description="generated test records per task")
    seed: NonNegativeInt = Field(0, description="base seed; each task mixes in its own name")


class MinRows(Section):
    """Fewest rows each split of a task must have."""

    train: PositiveInt = Field(20, description="fewest training rows a task may have")
    test: PositiveInt = Field(10, description="fewest test rows a task may have")


class ValidateConfig(Section):
    """Data validation (Great Expectations) applied to every task before anything trains on it."""

    min_rows: MinRows = Field(default_factory=MinRows, description="fewest rows per split")
    question_type_balance_tolerance: Probability = Field(
        0.6, description="each question type's share of a split must lie within 1/k * (1 +- tolerance)"
    )
    max_image_bytes: PositiveInt = Field(5_000_000, description="largest image file accepted, bytes")
    min_image_side: PositiveInt = Field(8, description="smallest image side accepted (imported data), pixels")
    max_image_side: PositiveInt = Field(4096, description="largest image side accepted (imported data), pixels")
    image_modes: list[str] = Field(["RGB"], min_length=1, description="Pillow colour modes accepted")
    max_question_chars: PositiveInt = Field(
        1000, description="longest question accepted, characters (the tiny base's context is 512 tokens)"
    )


class VisionConfig(Section):
    """The tiny base's CLIP vision tower."""

    hidden_size: PositiveInt = Field(128, description="CLIP vision tower width")
    layers: PositiveInt = Field(2, description="CLIP vision tower depth")
    heads: PositiveInt = Field(4, description="attention heads (must divide hidden_size)")
    patch_size: PositiveInt = Field(16, description="patch side, pixels (must divide image_size)")
    feature_layer: int = Field(-1, description="vision layer whose output feeds the projector")


class TextConfig(Section):
    """The tiny base's Llama decoder."""

    hidden_size: PositiveInt = Field(192, description="Llama decoder width")
    intermediate_size: PositiveInt = Field(512, description="Llama MLP width")
    layers: PositiveInt = Field(4, description="Llama decoder depth")
    heads: PositiveInt = Field(4, description="attention heads (must divide hidden_size)")
    max_positions: int = Field(512, ge=64, description="context length, tokens")


class TinyConfig(Section):
    """The embedded tiny LLaVA the `base` stage builds from configs and pretrains offline."""

    image_size: int = Field(64, ge=8, le=1024, description="image side the vision tower takes, pixels")
    vocab_size: int = Field(1024, ge=300, description="byte-level BPE vocabulary size")
    tokenizer_samples: PositiveInt = Field(300, description="generated questions per generator for the tokenizer")
    train_vision: bool = Field(False, description="train the vision tower too (a frozen random tower is stable)")
    vision: VisionConfig = Field(default_factory=VisionConfig)
    text: TextConfig = Field(default_factory=TextConfig)

    @model_validator(mode="after")
    def _shapes(self) -> TinyConfig:
        if self.image_size % self.vision.patch_size:
            raise ValueError(
                f"base.tiny.vision.patch_size: {self.vision.patch_size} does not divide "
                f"base.tiny.image_size {self.image_size}"
            )
        for name, part in (("vision", self.vision), ("text", self.text)):
            if part.hidden_size % part.heads:
                raise ValueError(
                    f"base.tiny.{name}.heads: {part.heads} does not divide base.tiny.{name}.hidden_size "
                    f"{part.hidden_size}"
                )
        return self


class TrainingConfig(Section):
    """One training run of the shared training loop (mllmcl.model.training)."""

    steps: PositiveInt = Field(800, description="optimizer steps")
    batch_size: PositiveInt = Field(16, description="examples per step")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="peak learning rate (AdamW)")
    warmup_steps: NonNegativeInt = Field(30, description="linear warm-up steps before the cosine decay")
    min_lr_ratio: Probability = Field(0.1, description="the cosine decays to lr * min_lr_ratio")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, ge=0.0, description="gradient norm clip (0 = off)")
    seed: NonNegativeInt = Field(0, description="seed of initialisation and batch order")
    checkpoint_every: NonNegativeInt = Field(200, description="steps between resumable checkpoints (0 = none)")


class PretrainConfig(TrainingConfig):
    """Pretraining of the tiny base on the general and language suites."""

    steps: PositiveInt = Field(1200, description="optimizer steps")
    batch_size: PositiveInt = Field(32, description="examples per step")
    warmup_steps: NonNegativeInt = Field(50, description="linear warm-up steps before the cosine decay")
    checkpoint_every: NonNegativeInt = Field(250, description="steps between resumable checkpoints (0 = none)")


class BaseConfig(Section):
    """The base vision-language model every expert and the router are trained from."""

    build: Literal["tiny", "none"] = Field(
        "tiny", description="'tiny' builds and pretrains the embedded model; 'none' uses name_or_path as is"
    )
    name_or_path: str | None = Field(
        None, description="any Hugging Face image-text-to-text model: a folder, or a hub id already in the cache"
    )
    trust_remote_code: bool = Field(False, description="let transformers run the model's own code (off by default)")
    tiny: TinyConfig = Field(default_factory=TinyConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)

    @model_validator(mode="after")
    def _source(self) -> BaseConfig:
        if self.build == "none" and not (self.name_or_path or "").strip():
            raise ValueError("base.name_or_path: required when base.build is 'none' (name the model to use)")
        return self


class AdapterConfig(TrainingConfig):
    """A LoRA adapter on the base's language model (PEFT)."""

    lora_r: PositiveInt = Field(16, description="LoRA rank")
    lora_alpha: PositiveInt = Field(32, description="LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[ModuleName] | Literal["auto"] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="linear layers that get LoRA, matched by name inside language_model_scope; auto = every linear "
        "layer of the language model",
    )
    language_model_scope: ModuleName | Literal["auto"] = Field(
        "language_model",
        description="LoRA only inside modules whose path contains this (never the vision tower); auto = the model's "
        "decoder",
    )
    modules_to_save: list[ModuleName] | Literal["auto"] = Field(
        ["multi_modal_projector"],
        description="modules trained in full and stored with the adapter; auto = the vision-language projector "
        "(experts) or the output head (router)",
    )


class ExpertConfig(AdapterConfig):
    """One LoRA expert per task, always trained from the base (parameter isolation). `steps` is the budget; with a
    validation split the expert keeps the weights of its best validation check and stops early when checks stop
    improving. A task's data/raw/<task>/spec.yaml may override these settings for its own expert (`expert:`), so one
    task's budget changes without retraining the others."""

    steps: PositiveInt = Field(1200, description="optimizer steps at most (early stopping keeps the best check)")
    validation_size: NonNegativeInt = Field(
        200,
        description="training records held out to pick the step the expert keeps (at most 10% of the train split; "
        "0 = none: train every step, keep the last)",
    )
    eval_every: PositiveInt = Field(100, description="steps between validation checks")
    patience: NonNegativeInt = Field(
        3, description="validation checks without improvement before training stops (0 = never stop early)"
    )


ROUTER_KINDS = ("mllm", "prototype", "cascade")
MOVED_TO_ROUTING = ("min_confidence", "text_only_to_base")


class RouterConfig(AdapterConfig):
    """How the router is trained. `kind`: `mllm` is MR-LoRA's router, a LoRA on the base that answers with an
    expert's letter; `prototype` routes by per-task Gaussians of the base's own image and question embeddings (no
    adapter, no decoder pass); `cascade` asks the prototype first and the MLLM router only where it is unsure."""

    kind: Literal["mllm", "prototype", "cascade"] = Field(
        "mllm", description="mllm (MR-LoRA's LoRA router), prototype (base features) or cascade (prototype first)"
    )
    steps: PositiveInt = Field(2000, description="optimizer steps")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="peak learning rate (AdamW)")
    warmup_steps: NonNegativeInt = Field(20, description="linear warm-up steps before the cosine decay")
    checkpoint_every: NonNegativeInt = Field(100, description="steps between resumable checkpoints (0 = none)")
    modules_to_save: list[ModuleName] | Literal["auto"] = Field(
        ["lm_head"], description="the letters are new outputs for the base: train the output head too"
    )
    samples_per_task: PositiveInt = Field(100, description="replay samples per learned task")
    base_samples: NonNegativeInt = Field(50, description="text-only samples labelled 'base' (open-set fallback)")
    question_swaps: NonNegativeInt | NonNegativeFloat = Field(  # an int stays one: kept results' keys hold
        1,
        description="copies of each replay request whose wording only one task asks, shown with another task's image "
        "and labelled with the asking task: the router learns that such a question decides, whatever the image looks "
        "like (0 = none; 0.25 = a quarter of them get one)",
    )
    base_suite: str = Field("language", description="suite whose questions teach the router the base fallback")
    eval_samples_per_task: PositiveInt = Field(100, description="held-out samples per task for router accuracy")
    novelty_samples_per_task: PositiveInt = Field(
        300, description="open set: training images per task to fit its profile, and as many others to calibrate it"
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        """Routing thresholds are read at answer time now: say where a key of an older params.yaml went."""
        moved = [k for k in (*MOVED_TO_ROUTING, "novelty_quantile") if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(
                f"{', '.join('router.' + k for k in moved)} moved to {', '.join('routing.' + k for k in moved)} "
                "(read when answering: changing it re-runs evaluate and gate, never the router's training)"
            )
        return data


class RoutingConfig(Section):
    """How routes are decided at answer time (evaluate, predict, serve), whatever the router's kind: changing these
    re-runs evaluate and gate, never the router's training; a registry version records the ones it was gated with."""

    min_confidence: Probability = Field(
        0.5, description="MLLM router: below this confidence, or on an illegal letter, the base answers"
    )
    text_only_to_base: bool = Field(False, description="true = never ask the router about text-only requests")
    novelty_quantile: Probability = Field(
        0.99,
        description="open set: an image request farther from every learned task (base embeddings, Mahalanobis) "
        "than this quantile of held-out known requests goes to the base, flagged unknown; 1 = off",
    )
    cascade_confidence: Probability = Field(
        0.9,
        description="cascade: the prototype decides when its posterior for the nearest task is at least this; "
        "below it the MLLM router is asked",
    )


class EvaluateConfig(Section):
    """Evaluation of the routed system on every learned task plus the text-only suite."""

    batch_size: PositiveInt = Field(64, description="requests per generation batch")
    max_new_tokens: PositiveInt = Field(6, description="longest answer generated, tokens")


class GateConfig(Section):
    """The promotion gate: the candidate against the registry's production version."""

    min_task_accuracy: Probability = Field(0.70, description="every task, for a first candidate (no production)")
    min_new_task_accuracy: Probability = Field(0.70, description="each task production does not know yet")
    max_prior_drop: Probability = Field(0.03, description="most accuracy a prior task may lose vs production")
    min_router_accuracy: Probability = Field(0.95, description="share of requests routed to the right expert")
    max_language_drop: Probability = Field(0.05, description="text-only suite: most base-minus-candidate drop")
    alpha: float = Field(
        0.05, gt=0.0, lt=1.0, description="level at which a prior task must show its drop is below max_prior_drop"
    )
    require_approval: bool = Field(False, description="the Prefect flow pauses for a reviewer")


class RegistryConfig(Section):
    """Model registry: immutable versions and aliases."""

    uri: str = Field("registry", min_length=1, description="a local folder (relative to the project) or s3://b/p")
    model: str = Field("mllmcl", pattern=REGISTRY_NAME_PATTERN, description="model name in it")


class S3Config(Section):
    """S3 connection settings of both the DVC remote and the registry (credentials never go here)."""

    endpoint_url: str | None = Field(
        None, pattern=URL_PATTERN, description="S3-compatible endpoint (MinIO, moto, ...); null = AWS"
    )
    region: str | None = Field("us-east-1", description="S3 region")


class StorageConfig(Section):
    """Where DVC data and the registry live. Credentials come from the AWS chain, never from this file."""

    dvc_remote: str | None = Field(".dvc-remote", description="DVC remote: a folder or s3://bucket/prefix; null = none")
    s3: S3Config = Field(default_factory=S3Config)

    @field_validator("dvc_remote")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith("s3://"):
            raise ValueError(f"storage.dvc_remote: {value!r} is not a local folder or an s3:// URL")
        return value


class ScheduleConfig(Section):
    """Prefect schedule of the continual-stage deployment (`python -m flows.serve`)."""

    cron: str | None = Field("0 3 * * *", description="cron of the scheduled continual stage; null = none")
    name: str = Field("scheduled", min_length=1, description="deployment name of the scheduled run")
    drift_requires_approval: bool = Field(True, description="drift-triggered stages wait for a reviewer")
    monitor_minutes: NonNegativeInt = Field(
        15, description="the drift monitor reads new traffic and incoming batches this often (0 = not scheduled)"
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"schedule.cron: {value!r} is not a 5-field cron expression")
        return value


class DriftConfig(Section):
    """Drift of incoming requests against the learned tasks' training data (Evidently), and the policy that turns a
    drift report into a decision (nothing, alert/refresh, new task, labelling request)."""

    drift_share: Probability = Field(0.5, description="share of drifted feature columns that makes a batch drifted")
    stat_threshold: float = Field(0.05, gt=0.0, lt=1.0, description="p-value below which one column drifted")
    strong_p_value: float = Field(
        1e-4,
        gt=0.0,
        lt=1.0,
        description="one column with a p-value below this drifts the batch on its own (e.g. a new image size that the "
        "processor's resize hides from the embeddings)",
    )
    reference_rows: PositiveInt = Field(600, description="training records sampled as the reference")
    seed: NonNegativeInt = Field(0, description="seed of the reference sample")
    embedding_threshold: Probability = Field(
        0.7,
        description="embedding and question-text drift: out-of-fold ROC AUC of a classifier telling the batch from "
        "the reference, above = drift (0.5 = indistinguishable; 50 requests give a null spread of about 0.05)",
    )
    novel_share: Probability = Field(
        0.3, description="share of a batch flagged unknown (router unsure or novel embedding) that makes it novel data"
    )
    min_batch: PositiveInt = Field(20, description="fewest requests the monitor judges at once (fewer wait)")
    cooldown_minutes: NonNegativeInt = Field(
        30, description="after a drift event, no new event for the same decision for this long (one stage per burst)"
    )
    traffic_retention_days: NonNegativeInt = Field(
        30,
        description="days of traffic log (questions, and images when serve.keep_images) kept: the log is one file per "
        "UTC day, and each drift-monitor run deletes the days older than this, whole, after reading them "
        "(0 = keep every day)",
    )


class ServeConfig(Section):
    """`mllmcl serve`: the HTTP endpoint that answers with the `production` version and logs traffic."""

    host: str = Field("127.0.0.1", min_length=1, description="bind address; loopback unless told")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    max_batch: PositiveInt = Field(16, description="requests answered in one forward pass at most")
    max_wait_ms: NonNegativeInt = Field(10, description="how long the first request of a batch waits for company")
    max_image_bytes: PositiveInt = Field(5_000_000, description="largest image upload accepted, bytes")
    max_image_pixels: PositiveInt = Field(
        4_194_304,
        description="most pixels an image is decoded to (2048x2048; 12 MB as RGB): a larger JPEG is decoded at 1/2, "
        "1/4 or 1/8 scale, any other larger image is refused before decoding (decompression bombs)",
    )
    min_image_side: PositiveInt = Field(8, description="smallest image side accepted, pixels (processors choke below)")
    max_question_chars: PositiveInt = Field(2000, description="longest question accepted, characters")
    max_body_bytes: PositiveInt = Field(
        32_000_000,
        description="largest JSON batch body read, bytes (one request's limit follows from max_image_bytes); "
        "enforced while the body streams in",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="a request body must arrive within this many seconds (408 after): idle sockets hold no place",
    )
    max_queue: PositiveInt = Field(
        32, description="requests admitted at once (being read, decoded, waiting or answered); more get 503"
    )
    reload_seconds: float = Field(5.0, gt=0.0, description="how often the registry's production alias is checked")
    keep_images: bool = Field(False, description="store request images in the traffic log (privacy: off)")
    traffic_dir: str = Field("data/incoming/traffic", min_length=1, description="traffic log folder (JSONL per day)")

    @model_validator(mode="after")
    def _queue_holds_a_batch(self):
        """A JSON batch of max_batch requests must fit in the queue, or it could never be answered."""
        if self.max_queue < self.max_batch:
            raise ValueError(f"max_queue ({self.max_queue}) must be at least max_batch ({self.max_batch})")
        return self


class ComputeConfig(Section):
    """How much of the machine a stage uses. No stage declares it to DVC: changing it re-runs nothing."""

    threads: PositiveInt | Literal["auto"] = Field(
        "auto", description="torch CPU threads; 'auto' = the cores not busy when the stage starts"
    )
    gpus: PositiveInt = Field(
        1, description="GPUs one training stage uses; above 1 the stage runs under `accelerate launch` (data parallel)"
    )
    mixed_precision: Literal["auto", "no", "bf16"] = Field(
        "auto", description="'auto' = bf16 on a CUDA device that supports it, full precision otherwise"
    )


class ClusterConfig(Section):
    """Where the continual-stage flow runs independent stages (every stale expert): this process, one after another,
    or Dask workers, each in its own checkout that shares only the DVC remote (and its run-cache) with this one."""

    enabled: bool = Field(False, description="fan stale experts out to Dask workers (needs storage.dvc_remote)")
    address: str | None = Field(
        None, description="Dask scheduler, e.g. tcp://10.0.0.5:8786; null = a local cluster started for the stage"
    )
    workers: PositiveInt = Field(2, description="workers of the local cluster (ignored with an address)")
    cpus_per_stage: PositiveInt = Field(1, description="CPU threads one worker gives one expert (Dask resource CPU)")
    gpus_per_stage: NonNegativeInt = Field(0, description="GPUs one expert needs (Dask resource GPU; 0 = none)")
    scratch: str | None = Field(None, description="workers' folder for checkouts and their DVC cache; null = temp")
    retries: NonNegativeInt = Field(2, description="a stage that fails on a worker is run again this many times")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(tcp|tls|ucx|inproc)://", value):
            raise ValueError(f"cluster.address: {value!r} is not a Dask scheduler address such as tcp://host:8786")
        return value


class Params(Section):
    """The whole pipeline configuration."""

    tasks: list[str] = Field(
        min_length=1, description="ordered tasks learned so far; appending one starts a continual stage"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    # `validate` would shadow a pydantic method: the section is `validate_` in code, `validate` in the file
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    base: BaseConfig = Field(default_factory=BaseConfig)
    expert: ExpertConfig = Field(default_factory=ExpertConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, validate_by_name=True, validate_by_alias=True
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str]) -> list[str]:
        seen: set[str] = set()
        for i, name in enumerate(tasks):
            if not TASK_NAME.fullmatch(name):
                raise ValueError(
                    f"tasks[{i}]: {name!r} is not a task name (1-32 lowercase letters, digits or '_', "
                    "starting with a letter)"
                )
            if name in RESERVED_TASKS:
                raise ValueError(f"tasks[{i}]: {name!r} is reserved ({', '.join(sorted(RESERVED_TASKS))})")
            if name in seen:
                raise ValueError(f"tasks[{i}]: {name!r} is listed twice")
            seen.add(name)
        if len(tasks) > MAX_TASKS:
            raise ValueError(f"tasks: {len(tasks)} tasks; the router's pool holds at most {MAX_TASKS}")
        return tasks

    @model_validator(mode="after")
    def _cross(self) -> Params:
        if self.router.base_suite in self.tasks:
            raise ValueError(f"tasks: {self.router.base_suite!r} is router.base_suite, the text-only suite")
        if self.base.build == "tiny" and self.data.image_size != self.base.tiny.image_size:
            raise ValueError(
                f"data.image_size: {self.data.image_size} differs from base.tiny.image_size "
                f"{self.base.tiny.image_size} (the generated images must fit the tiny base)"
            )
        return self

    def dump(self) -> dict:
        """Plain data with params.yaml's key names (manifests, lineage)."""
        return self.model_dump(mode="json", by_alias=True)
