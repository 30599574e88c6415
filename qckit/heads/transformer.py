"""Fine-tuning with the HF Trainer: classifier or yes/no head; full, LoRA or QLoRA; one model or per task.

Three heads:
- ``classifier``: ``AutoModelForSequenceClassification`` on the (query, target) pair; one logit with a
  binary cross-entropy, or two classes with a cross-entropy.
- ``yes_no``: a causal LM reads the Alpaca prompt of ``qckit.prompts``; the loss is a cross-entropy over
  the two label-word logits at the answer position only, and p(yes) = softmax(no, yes)[yes] (the paper).
  Only the answer position's two logits are computed: the backbone's last hidden state is multiplied by
  the two rows of the output embedding, never by the whole vocabulary.

(The ``embedding`` head, frozen or fine-tuned encoders feeding gradient-boosted trees, is ``qckit.heads.trees``.)
Step 05's torchrun jobs (``training.launcher``, ``qckit.launch``) run this in every process (DDP, or
DeepSpeed with ``training.deepspeed``; the Trainer does the distribution). Scoring lives in ``qckit.heads.llm_scoring``.

Example:
    >>> from qckit.heads import transformer
    >>> figures = transformer.train(train_df, dev_df, params, output_dir="outputs/x/models/clf")
    >>> loaded = transformer.load("outputs/x/models/clf")
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qckit.config import Params, TrainingParams
from qckit.heads.common import (
    META_FILE,
    LoadedModel,
    f1_metrics,
    peak_memory_mib,
    positive_weight,
    read_meta,
    refuse_unsafe_files,
    sample_rows,
    trainer_progress,
)
from qckit.models import inference_device, resolve
from qckit.progress import headless, quiet_libraries, report
from qckit.prompts import build_prompt, label_token_ids, pair_texts


# --- inputs ------------------------------------------------------------------------------------------
@dataclass
class Encoder:
    """Turns pairs-table rows into token ids for one head, the same way in training and scoring."""

    tokenizer: Any
    head: str
    tp: TrainingParams

    def __post_init__(self) -> None:
        self._prefix_cache: dict[str, list[int]] = {}
        self._tail = None
        if self.head == "yes_no":
            self.label_ids = label_token_ids(self.tokenizer, tuple(self.tp.label_words))

    def prefix_ids(self, task: str) -> list[int]:
        """Token ids of the prompt part every row of a task shares (with the BOS token if any)."""
        if task not in self._prefix_cache:
            prefix = build_prompt(task, "", "").prefix
            self._prefix_cache[task] = self.tokenizer(prefix, add_special_tokens=True)["input_ids"]
        return self._prefix_cache[task]

    def _suffix_ids(self, row) -> list[int]:
        """Row part of the prompt, each piece tokenized on its own and truncated on its own.

        max_length bounds the row's part (the shared prefix is the same for every row): the query side
        keeps at most half of it, the target what is left, so truncation never removes a whole field.
        """
        prompt = build_prompt(row.task, row.query, row.target, language=row.language,
                              language_tag=self.tp.language_tag, category_style=self.tp.category_style)
        if self._tail is None:
            self._tail = self.tokenizer(prompt.tail, add_special_tokens=False)["input_ids"]
        budget = max(self.tp.max_length - len(self._tail), 8)
        head = self.tokenizer(prompt.head, add_special_tokens=False)["input_ids"][: budget // 2]
        target = self.tokenizer(prompt.target, add_special_tokens=False)["input_ids"][: budget - len(head)]
        return head + target + self._tail

    def encode(self, df: pd.DataFrame) -> list[dict[str, Any]]:
        """One feature dict per row; `prefix_len` marks the shared prefix for the yes/no head."""
        feats = []
        for row in df.itertuples(index=False):
            if self.head == "yes_no":
                prefix = self.prefix_ids(row.task)
                ids = prefix + self._suffix_ids(row)
                feat = {"input_ids": ids, "attention_mask": [1] * len(ids), "prefix_len": len(prefix)}
            else:
                left, right = pair_texts(row.task, row.query, row.target, language=row.language,
                                         language_tag=self.tp.language_tag, category_style=self.tp.category_style)
                feat = dict(self.tokenizer(left, right, truncation=True, max_length=self.tp.max_length))
            if not pd.isna(row.label):
                feat["labels"] = int(row.label)
            feats.append(feat)
        return feats


class PairDataset:
    """A list of feature dicts as a torch-style dataset (the Trainer only needs len and getitem)."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


def collate(tokenizer, features: list[dict[str, Any]]) -> dict[str, Any]:
    """Right-pad a batch to its longest row (dynamic padding)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(f["input_ids"]) for f in features)
    batch: dict[str, Any] = {}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in features[0]:
            fill = pad if key == "input_ids" else 0
            batch[key] = torch.tensor([f[key] + [fill] * (width - len(f[key])) for f in features])
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


# --- model ------------------------------------------------------------------------------------------
def _dtype(tp: TrainingParams):
    import torch

    if tp.precision == "fp32" or (tp.precision == "auto" and not torch.cuda.is_available()):
        return torch.float32
    if tp.precision == "fp16":
        return torch.float16
    if tp.precision == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _quantization_config():
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_base(spec: str, tp: TrainingParams, *, cache_dir=None, trust_remote_code: bool = False):
    """Resolve and load the model and tokenizer for the chosen head and method."""
    import torch
    from transformers import AutoTokenizer

    path = resolve(spec, cache_dir=cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # full fine-tuning keeps fp32 master weights and trains in bf16 / fp16 through the Trainer's autocast: weights
    # stored in bf16 lose the small updates of a low learning rate to rounding; a frozen base (LoRA) needs no copy
    dtype = torch.float32 if tp.method == "full" else _dtype(tp)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if tp.method == "qlora":
        kwargs["quantization_config"] = _quantization_config()
    model = auto_class(tp.head).from_pretrained(path, **_head_kwargs(tp.head, tp.num_labels), **kwargs)
    if tp.head == "classifier":
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, path


def auto_class(head: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if head == "classifier" else AutoModelForCausalLM


def _head_kwargs(head: str, num_labels: int) -> dict[str, Any]:
    if head != "classifier":
        return {}
    problem = "multi_label_classification" if num_labels == 1 else "single_label_classification"
    return {"num_labels": num_labels, "problem_type": problem}


def prepare_for_training(model, tp: TrainingParams):
    """Freeze embeddings, wrap with LoRA (peft) or prepare a 4-bit model; returns the trainable model."""
    # Non-reentrant checkpointing (PyTorch's recommended kind): gradients reach the LoRA weights without any
    # input that requires grad, which a frozen base does not have (for the reentrant kind peft patches the
    # embeddings' output to require grad).
    checkpointing = {"use_reentrant": False}
    if tp.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # recent transformers 5 deprecate the old name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    if tp.method == "full":
        if tp.freeze_embeddings:
            model.get_input_embeddings().requires_grad_(False)
        if tp.train_layers:
            freeze_lower_layers(model, tp.train_layers)
        return model
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    if tp.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=tp.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS if tp.head == "classifier" else TaskType.CAUSAL_LM,
        r=tp.lora.r, lora_alpha=tp.lora.alpha, lora_dropout=tp.lora.dropout,
        target_modules=tp.lora.target_modules, modules_to_save=tp.lora.modules_to_save,
    )
    return get_peft_model(model, config)


def freeze_lower_layers(model, keep: int) -> None:
    """Freeze the embeddings and every transformer layer but the top `keep`; heads stay trainable.

    On a CPU this cuts the backward pass to the top layers, which is most of the training time saved.
    """
    import torch.nn as nn

    n_layers = getattr(model.config, "num_hidden_layers", None)
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if not stacks:
        raise ValueError(f"train_layers: cannot find the {n_layers} transformer layers of {type(model).__name__}")
    layers = stacks[0]
    backbone = model.base_model  # e.g. BertModel inside BertForSequenceClassification; the head is outside
    for p in backbone.parameters():
        p.requires_grad_(False)
    for layer in layers[-keep:]:
        layer.requires_grad_(True)
    for name, module in backbone.named_children():  # pooler / final norm sit above the layers
        if name in ("pooler", "norm", "final_layer_norm", "ln_f"):
            module.requires_grad_(True)


def yes_no_logits(model, input_ids, attention_mask, label_ids: tuple[int, int], *, past_key_values=None,
                  position_ids=None):
    """(batch, 2) logits of the (no, yes) words at each row's last real token (right padding)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.get_decoder()
    # transformers 5 names the key/value cache argument `cache` (it was `past_key_values`)
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, cache=past_key_values,
                   position_ids=position_ids, use_cache=past_key_values is not None)
    hidden = out.last_hidden_state
    n_past = 0 if past_key_values is None else attention_mask.shape[1] - input_ids.shape[1]
    last = attention_mask[:, n_past:].sum(dim=1) - 1
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weight = base.get_output_embeddings().weight[list(label_ids)]
    logits = h.to(weight.dtype) @ weight.T
    cap = getattr(base.config, "final_logit_softcapping", None) or getattr(
        getattr(base.config, "text_config", None), "final_logit_softcapping", None)
    if cap:  # Gemma-style soft-capping applies to every logit, so to these two as well
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


def make_loss(tp: TrainingParams, pos_weight: float):
    """Loss on the head's logits: BCE for one logit, CE over two (classes or yes/no words)."""
    import torch
    import torch.nn.functional as F

    def loss_fn(logits, labels):
        if logits.shape[-1] == 1:
            w = torch.tensor(pos_weight, device=logits.device)
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), labels.float(), pos_weight=w)
        weight = torch.tensor([1.0, pos_weight], device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits, labels.long(), weight=weight)

    return loss_fn


# --- Trainer ----------------------------------------------------------------------------------------
HEAD_MODULES = ("classifier", "score", "pooler")


def is_head_parameter(name: str) -> bool:
    """Whether a parameter belongs to the sequence-classification head that the pretrained base lacks: the
    ``classifier`` (BERT, XLM-R) or ``score`` (Qwen, Gemma) layers and an encoder's [CLS] ``pooler``; peft's
    copies (``classifier.modules_to_save.default.weight``) included."""
    return any(part in HEAD_MODULES for part in name.split("."))


def _trainer_class():
    from transformers import Trainer

    class PairTrainer(Trainer):
        """The HF Trainer with qckit's head-specific logits and class-weighted loss."""

        def __init__(self, *args, head: str, label_ids=None, loss_fn=None, head_learning_rate=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.head, self.label_ids, self.loss_fn = head, label_ids, loss_fn
            self.head_learning_rate = head_learning_rate
            # A model whose forward takes **kwargs (every causal LM) makes the Trainer assume the loss was
            # already normalised by the rows of all accumulated micro-batches, so it would sum them: the
            # gradient and the logged loss grew grad_accum-fold. compute_loss returns a per-batch mean.
            self.model_accepts_loss_kwargs = False

        def create_optimizer(self, model=None):
            """The Trainer's optimizer (its decay groups, its optimizer class), with the head's parameters in
            groups of their own at ``head_learning_rate``; the scheduler then warms up and decays each group."""
            if self.head_learning_rate is None or self.optimizer is not None:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[bool, bool], list] = {}
            for name, p in opt_model.named_parameters():
                if p.requires_grad:
                    groups.setdefault((is_head_parameter(name), name in decay), []).append(p)
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(
                [{"params": ps, "weight_decay": self.args.weight_decay if decayed else 0.0,
                  **({"lr": self.head_learning_rate} if head else {})} for (head, decayed), ps in groups.items()],
                **kwargs)
            return super().create_optimizer(model)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            if self.head == "yes_no":
                logits = yes_no_logits(model, inputs["input_ids"], inputs["attention_mask"], self.label_ids)
            else:
                logits = model(**inputs).logits.float()
            loss = self.loss_fn(logits, labels)
            return (loss, {"logits": logits}) if return_outputs else loss

    return PairTrainer


def training_arguments(tp: TrainingParams, output_dir: Path, *, seed: int, has_eval: bool):
    """The HF Trainer's ``TrainingArguments`` for ``tp`` (their values: ``trainer_settings``)."""
    from transformers import TrainingArguments

    return TrainingArguments(**trainer_settings(tp, output_dir, seed=seed, has_eval=has_eval))


def trainer_settings(tp: TrainingParams, output_dir: Path, *, seed: int, has_eval: bool) -> dict[str, Any]:
    """The keyword arguments of ``TrainingArguments`` for ``tp``. Inside a torchrun job (``training.launcher``)
    they carry ``training.deepspeed``; a step's own process has no launcher for DeepSpeed, so it trains without."""
    import torch

    strategy = "steps" if tp.eval_steps else "epoch"
    deepspeed = tp.deepspeed if "LOCAL_RANK" in os.environ else None  # torchrun sets LOCAL_RANK in its workers
    dtype = _dtype(tp)
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=tp.epochs, learning_rate=tp.learning_rate, warmup_steps=tp.warmup_ratio,
        weight_decay=tp.weight_decay, per_device_train_batch_size=tp.batch_size,
        per_device_eval_batch_size=tp.eval_batch_size, gradient_accumulation_steps=tp.grad_accum,
        eval_strategy=strategy if has_eval else "no", eval_steps=tp.eval_steps,
        save_strategy="steps" if tp.save_steps else "epoch", save_steps=tp.save_steps or 500,
        save_total_limit=2, logging_steps=10, seed=seed, data_seed=seed,
        train_sampling_strategy="group_by_length", length_column_name="length",
        bf16=dtype == torch.bfloat16 and torch.cuda.is_available(),
        fp16=dtype == torch.float16 and torch.cuda.is_available(),
        load_best_model_at_end=bool(tp.early_stopping_patience) and has_eval,
        metric_for_best_model="f1_best", greater_is_better=True,
        report_to=[], remove_unused_columns=False, disable_tqdm=os.environ.get("QCKIT_HEADLESS") == "1",
        dataloader_num_workers=0, ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(), deepspeed=deepspeed,
    )


def train(
    train_df: pd.DataFrame, dev_df: pd.DataFrame | None, params: Params, *, output_dir: str | Path,
    resume: bool = True, keep_model: bool = False,
) -> dict[str, Any]:
    """Fine-tune on labelled pairs; saves the model (or adapter) and its qckit metadata in output_dir.

    Resumes from the newest complete checkpoint in `output_dir/checkpoints` when one exists (interrupted
    training); a checkpoint folder left half-written by a kill is skipped, reported to the run log and
    listed in the figures' ``skipped_checkpoints``. Returns the training figures: log history (loss, dev F1
    per evaluation), time, throughput, memory.
    """
    import torch
    from transformers import EarlyStoppingCallback, set_seed

    quiet_libraries()
    tp, seed = params.training, params.run.seed
    if tp.num_threads:
        torch.set_num_threads(tp.num_threads)
    set_seed(seed)
    output_dir = Path(output_dir)
    model, tokenizer, path = load_base(params.models.classifier, tp, cache_dir=params.models.cache_dir,
                                       trust_remote_code=params.models.trust_remote_code)
    model = prepare_for_training(model, tp)
    encoder = Encoder(tokenizer, tp.head, tp)
    train_df = sample_rows(train_df.dropna(subset=["label"]), tp.max_train_rows, seed)
    train_feats = encoder.encode(train_df)
    for f in train_feats:
        f["length"] = len(f["input_ids"])
    eval_ds = None
    if dev_df is not None and len(dev_df):
        eval_ds = PairDataset(encoder.encode(sample_rows(dev_df.dropna(subset=["label"]), tp.dev_eval_rows, seed)))
    args = training_arguments(tp, output_dir / "checkpoints", seed=seed, has_eval=eval_ds is not None)
    callbacks = [EarlyStoppingCallback(tp.early_stopping_patience)] if tp.early_stopping_patience and eval_ds else []
    callbacks += trainer_progress(f"training the {tp.head} head")
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=PairDataset(train_feats), eval_dataset=eval_ds,
        data_collator=lambda feats: collate(tokenizer, feats), processing_class=tokenizer,
        compute_metrics=f1_metrics if eval_ds is not None else None, callbacks=callbacks,
        head=tp.head, label_ids=getattr(encoder, "label_ids", None),
        head_learning_rate=tp.head_learning_rate,  # set for the classifier head only (TrainingParams checks)
        loss_fn=make_loss(tp, positive_weight(train_df.label.to_numpy(float), tp)),
    )
    if headless():  # the per-step log dicts go to metrics and the curves figure, not to the notebook
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    checkpoint, skipped = _last_checkpoint(output_dir / "checkpoints") if resume else (None, [])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    if trainer.is_world_process_zero():
        save_trained(trainer.model, tokenizer, output_dir, params, base_path=path)
    trainer.accelerator.wait_for_everyone()  # under torchrun no rank reads this model (two-stage) before it is saved
    figures = {
        "train_rows": len(train_df), "seconds": seconds, "resumed_from": checkpoint,
        "skipped_checkpoints": skipped,
        "rows_per_second": len(train_df) * tp.epochs / max(seconds, 1e-9),
        "peak_memory_mib": peak_memory_mib(), "log_history": trainer.state.log_history,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if keep_model:
        figures["model"] = trainer.model
    return figures


# What the Trainer writes into a checkpoint folder: the weights (one of these), then optimizer, scheduler and
# RNG state, and `trainer_state.json` last; a folder without a readable state file was cut short.
_STATE_FILE = "trainer_state.json"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _last_checkpoint(folder: Path) -> tuple[str | None, list[str]]:
    """The newest complete checkpoint in ``folder`` (or None) and the incomplete ones newer than it.

    A kill while the Trainer writes a checkpoint leaves a folder without ``trainer_state.json`` (or without
    weights); resuming from it fails on every retry, so such folders are skipped and reported (to the run
    log and in the returned list), and training resumes from the newest complete one, or from scratch.
    """
    if not folder.is_dir():
        return None, []
    found = []
    for path in folder.iterdir():
        number = path.name.removeprefix("checkpoint-")
        if path.is_dir() and path.name.startswith("checkpoint-") and number.isdigit():
            found.append((int(number), path))
    skipped: list[str] = []
    for _, path in sorted(found, reverse=True):
        problem = _checkpoint_problem(path)
        if problem is None:
            return str(path), skipped
        skipped.append(str(path))
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line per run, not per process
            report(f"skipping incomplete training checkpoint {path}: {problem}")
    return None, skipped


def _checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete."""
    try:
        json.loads((path / _STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {_STATE_FILE}"
    except (OSError, ValueError) as err:
        return f"unreadable {_STATE_FILE} ({type(err).__name__})"
    if any((path / name).is_file() for name in _WEIGHT_FILES):
        return None
    for name in _WEIGHT_INDEXES:
        if (path / name).is_file():
            try:
                shards = set(json.loads((path / name).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError) as err:
                return f"unreadable {name} ({type(err).__name__})"
            missing = sorted(s for s in shards if not (path / s).is_file())
            return f"weight shards missing: {', '.join(missing)}" if missing else None
    subdir_adapters = [d for d in path.iterdir() if d.is_dir()
                       and any((d / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin"))]
    if subdir_adapters or any(p.name.startswith("pytorch_model_fsdp") for p in path.iterdir()):
        return None  # several adapters in sub-folders, or an FSDP state dict: the Trainer loads these too
    return "no weights or adapter file"


def save_trained(model, tokenizer, output_dir: Path, params: Params, *, base_path) -> None:
    """The model (full weights or the LoRA adapter; safetensors, never a pickle), tokenizer and what scoring
    needs to reuse it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir))  # safetensors: transformers 5 and peft write no pickled weights
    tokenizer.save_pretrained(str(output_dir))
    tp = params.training
    meta = {
        "head": tp.head, "method": tp.method, "base_model": str(base_path), "base_spec": params.models.classifier,
        "num_labels": tp.num_labels, "label_words": list(tp.label_words), "max_length": tp.max_length,
        "language_tag": tp.language_tag, "category_style": tp.category_style,
        "training": tp.model_dump(mode="json"),
        # what the profile allowed in training; `load` never reads it (a received folder must not turn it on)
        "trust_remote_code": params.models.trust_remote_code,
    }
    (output_dir / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if tp.merge_adapter and tp.method != "full":
        merge_adapter(output_dir)


def merge_adapter(model_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Fold a saved LoRA adapter into its base weights; writes a plain model folder (default ``merged/``).

    The base is reloaded unquantised (bf16 on a GPU, fp32 on a CPU) for a QLoRA adapter too: folding into
    4-bit weights would round the adapter away. The merged folder loads in transformers and vLLM alone.
    """
    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir else model_dir / "merged"
    loaded = load(model_dir, quantize=False)
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    return out


def load(model_dir: str | Path, *, trust_remote_code: bool = False, device: str | None = None,
         quantize: bool | None = None) -> LoadedModel:
    """Load a model saved by ``train`` (full weights, or base + LoRA adapter).

    The model is placed on ``device`` (default: the GPU when there is one) in the precision it was trained in
    there (fp32 on a CPU). A QLoRA adapter gets its base in 4-bit again on a GPU (``quantize``, default: as
    trained), so scores match the ones seen in training.

    Weights are read from safetensors only: a folder holding a pickle (``pytorch_model.bin``, ``*.pt``, ...) is
    refused with ``UnsafeArtefactError``. ``trust_remote_code`` is this argument alone (default False), never
    the folder's metadata: a received model folder cannot turn on its own code.
    """
    import torch
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    refuse_unsafe_files(model_dir)
    meta = read_meta(model_dir)
    tp = TrainingParams.model_validate(meta["training"])
    device = device or inference_device()
    on_gpu = device.startswith("cuda")
    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code), "use_safetensors": True,
                              "dtype": _dtype(tp) if on_gpu else torch.float32}
    if on_gpu and (quantize if quantize is not None else tp.method == "qlora"):
        kwargs.update(quantization_config=_quantization_config(), device_map={"": device})
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=bool(trust_remote_code))
    auto = auto_class(meta["head"])
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        base = auto.from_pretrained(meta["base_model"], **_head_kwargs(meta["head"], meta["num_labels"]), **kwargs)
        if meta["head"] == "classifier":
            base.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = auto.from_pretrained(str(model_dir), **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return LoadedModel(meta["head"], meta, model, folder=model_dir, tokenizer=tokenizer)


def weights_digest(model) -> str:
    """sha256 over every trainable tensor, in name order (equal on every rank after a DDP step)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()
