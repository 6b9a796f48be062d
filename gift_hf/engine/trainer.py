"""`GIFTTrainer`: a `transformers.Trainer` that trains students on soft labels.

It hooks into ``Trainer`` only through public mechanisms: ``compute_loss``,
``training_step``/``prediction_step`` (ZCA whitening of every batch), ``save_model`` (the
ZCA saved next to the weights), ``train`` (resume checks), ``get_train_dataloader``/
``get_eval_dataloader`` (the device-resident sets, ``GIFTConfig.device_resident``),
``floating_point_ops`` (parameters counted once) and ``TrainerCallback``s (checkpoint
completeness and rotation, the augmenter's step, divergence checks).
"""

from __future__ import annotations

import bisect
import copy
import json
import logging
import os
import shutil
import uuid
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.modeling_outputs import ImageClassifierOutput

from gift_hf.data.augment import ZCA, BatchAugmenter, build_augmenter, fit_zca
from gift_hf.data.device import DeviceBatchSampler, DeviceDataLoader, DeviceImageSet, dataloader_kwargs, device_resident
from gift_hf.data.images import ImageTransform, SoftLabelCollator, preprocessing_identity
from gift_hf.engine.checkpoints import (
    CHECKPOINT_MARKER,
    RUN_FILE,
    Checkpoint,
    current_run_id,
    dataset_fingerprint,
    last_checkpoint,
    list_checkpoints,
    read_json,
    write_json,
)
from gift_hf.engine.config import GIFTConfig
from gift_hf.engine.losses import Loss, get_loss
from gift_hf.engine.population import StudentPopulation
from gift_hf.engine.step import StepOutput, training_step
from gift_hf.hub.model_card import ModelCardCallback, save_model_card
from gift_hf.models.modeling import load_teacher, num_classes_of

__all__ = ["GIFTTrainer", "PopulationDataLoader", "TrainingDivergedError", "population_refusal"]

logger = logging.getLogger(__name__)

# The divergence step of a run that has not diverged: above any step, and exact in float64.
_NEVER = 2**52


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss, logits or soft labels; the run is not scored."""


class _RunMonitor(TrainerCallback):
    """On-device bookkeeping of the training loss, read only at log/eval/save steps.

    Every training micro-batch leaves the sums of its per-sample losses, student logits and
    soft labels on the device; every :attr:`FOLD_EVERY` micro-batches they are added to the
    run's totals, keeping the first step where one was non-finite, with no host
    synchronisation. At a step that logs, evaluates or saves (and at the end) the flag is read
    once and a diverged run stops with :class:`TrainingDivergedError`, before anything is
    logged, scored or saved from it.
    """

    # What each entry of the sums holds, as the error names it.
    WHAT = ("the soft labels (teacher logits or stored soft_label)", "the student's logits", "the loss")

    # Micro-batches whose sums are folded into the running totals at once: few kernels per
    # step, and a bounded list between two logging steps.
    FOLD_EVERY = 64

    def __init__(self, trainer: "GIFTTrainer") -> None:
        self.trainer = trainer
        self.reset()

    def reset(self, loss_sum: float = 0.0, count: float = 0.0) -> None:
        device = self.trainer.args.device
        # float64: the running sum of a long run's per-sample losses must not lose the small ones.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        # Running sums of (soft labels, student logits, per-sample losses) over the whole run;
        # the first step where one of the three held a NaN or inf, and which did.
        self.sums = torch.zeros(3, dtype=dtype, device=device)
        self.bad_parts = torch.zeros(3, dtype=torch.bool, device=device)
        self.first_bad = torch.full((), _NEVER, dtype=torch.long, device=device)
        self._zero = torch.zeros((), device=device)
        self.pending: list[torch.Tensor] = []  # (3,) float32 sums of each micro-batch not yet folded
        self.pending_steps: list[int] = []
        self.count = 0  # samples: a host number, known without the device
        self.base = (float(loss_sum), float(count))  # from the checkpoint a run resumed from

    def record(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor | None, step: int) -> None:
        # Four small kernels and no host read: a NaN or inf anywhere makes its float32 sum
        # non-finite (finite values overflow it only far past divergence).
        target_sum = targets.detach().sum(dtype=torch.float32) if targets is not None else self._zero
        self.pending.append(
            torch.stack(
                [target_sum, logits.detach().sum(dtype=torch.float32), per_sample.detach().sum(dtype=torch.float32)]
            )
        )
        self.pending_steps.append(step)
        self.count += per_sample.numel()
        if len(self.pending) >= self.FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Add the pending micro-batches to the running totals, on the device (no host read)."""
        if not self.pending:
            return
        rows = torch.stack(self.pending)
        # non_blocking: a host-to-device copy that does not wait for the device's queue.
        steps = torch.tensor(self.pending_steps).to(rows.device, non_blocking=True)
        bad = ~torch.isfinite(rows)
        bad_rows = bad.any(1)
        # The first non-finite micro-batch (rows are in step order); indexed by index_select,
        # as indexing with a tensor reads it back to the host.
        first = bad_rows.int().argmax().view(1)
        new = bad_rows.any() & (self.first_bad == _NEVER)
        self.first_bad = torch.where(new, steps.index_select(0, first)[0], self.first_bad)
        self.bad_parts = torch.where(new, bad.index_select(0, first)[0], self.bad_parts)  # what went non-finite
        self.sums += rows.sum(0, dtype=self.sums.dtype)
        self.pending, self.pending_steps = [], []

    def check(self) -> None:
        """Raise :class:`TrainingDivergedError` if any process saw a non-finite value (a host sync).

        The students of a population fail one by one (:meth:`GIFTTrainer.failed_students`):
        the run stops only when every student has diverged.
        """
        self.fold()
        trainer = self.trainer
        if trainer.population is not None and len(trainer.population) > 1:
            alive = trainer.accelerator.reduce(trainer.alive.to(self.sums.dtype), reduction="sum")
            if bool((alive > 0).any()):  # at a log/eval/save step only
                return
            first = min(trainer.failed_students().values())
            raise TrainingDivergedError(
                f"training diverged at step {first}: the loss of every one of the {len(trainer.population)} students "
                "trained together became non-finite (NaN or inf), the first at that step. Nothing was scored. "
                f"Lower learning_rate (now {trainer.args.learning_rate:g}), check the soft labels, or use bf16 "
                "instead of fp16."
            )
        state = torch.cat([self.first_bad.view(1).to(self.sums.dtype), self.bad_parts.to(self.sums.dtype)])
        gathered = self.trainer.accelerator.gather(state[None]).view(-1, 4).tolist()
        bad = [(int(row[0]), row[1:]) for row in gathered if row[0] < _NEVER]
        if not bad:
            return
        step = min(first for first, _ in bad)
        names = " and ".join(
            name for i, name in enumerate(self.WHAT) if any(flags[i] for first, flags in bad if first == step)
        )
        raise TrainingDivergedError(
            f"training diverged at step {step}: {names} became non-finite (NaN or inf). Nothing from step {step} on "
            f"was logged, evaluated or saved. Lower learning_rate (now {self.trainer.args.learning_rate:g}), check "
            "the soft labels, or use bf16 instead of fp16."
        )

    def totals(self) -> tuple[float, float]:
        """(sum of per-sample training losses, number of samples) over the whole run, every process (a host sync)."""
        self.fold()
        count = torch.tensor(float(self.count), dtype=self.sums.dtype, device=self.sums.device)
        local = torch.stack([self.sums[2], count])
        loss_sum, count = self.trainer.accelerator.reduce(local, reduction="sum").tolist()
        return self.base[0] + loss_sum, self.base[1] + count

    # ----------------------------------------------------------------------- callbacks
    def on_step_begin(self, args, state, control, **kwargs):
        for augmenter in self.trainer.augmenters:
            if augmenter is not None:
                augmenter.set_step(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_log or control.should_evaluate or control.should_save or control.should_training_stop:
            self.check()

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_log or control.should_evaluate or control.should_save:
            self.check()

    def on_train_end(self, args, state, control, **kwargs):
        self.check()


class _CheckpointCallback(TrainerCallback):
    """Marks a checkpoint complete once every process has saved it, then applies ``save_total_limit``.

    ``on_save`` runs after ``Trainer`` has written the whole checkpoint; the marker
    (:data:`~gift_hf.engine.checkpoints.CHECKPOINT_MARKER`) is written last, after a barrier, so a
    kill at any point before leaves a folder :func:`~gift_hf.engine.checkpoints.list_checkpoints`
    skips. Older checkpoints are deleted only after the new one is complete (``Trainer``'s own
    rotation, which runs before, is turned off), so the last complete checkpoint always survives.
    """

    def __init__(self, trainer: "GIFTTrainer") -> None:
        self.trainer = trainer

    def write_run_file(self, args) -> None:
        """From here on `last` means this run's checkpoints (:data:`~gift_hf.engine.checkpoints.RUN_FILE`)."""
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(
            os.path.join(args.output_dir, RUN_FILE), {"run_id": self.trainer.run_id, "run": self.trainer.run_identity()}
        )

    def on_train_begin(self, args, state, control, **kwargs):
        # Once training starts (every process is set up by then; another may still be checking
        # that output_dir is empty), and only where an earlier run left checkpoints `last` could
        # pick. Otherwise it waits for the first checkpoint, so a run refused on bad input
        # leaves a new output_dir untouched.
        if (
            args.should_save
            and os.path.isdir(args.output_dir)
            and (
                os.path.exists(os.path.join(args.output_dir, RUN_FILE))
                or any(name.startswith("checkpoint-") for name in os.listdir(args.output_dir))
            )
        ):
            self.write_run_file(args)

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        loss_sum, count = trainer.monitor.totals()  # a collective: every process takes part
        trainer.accelerator.wait_for_everyone()
        if not args.should_save:
            return
        if current_run_id(args.output_dir) != trainer.run_id:
            self.write_run_file(args)  # before the first marker of this run
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        write_json(
            os.path.join(folder, CHECKPOINT_MARKER),
            {
                "run_id": trainer.run_id,
                "run": trainer.run_identity(),
                "step": state.global_step,
                "train_loss_sum": loss_sum,
                "train_loss_count": count,
            },
        )
        if trainer.save_total_limit is not None:
            self.rotate(args.output_dir, state.global_step, state.best_model_checkpoint)

    def rotate(self, output_dir: str, step: int, best: str | None) -> None:
        """Keep the newest ``save_total_limit`` complete checkpoints of this run (and the best one)."""
        complete = [c for c in list_checkpoints(output_dir, run_id=self.trainer.run_id) if c.step <= step]
        keep = {c.path for c in complete[-max(self.trainer.save_total_limit, 1) :]}
        if best is not None:
            keep.add(os.path.join(output_dir, os.path.basename(os.path.normpath(best))))
        oldest_kept = min(c.step for c in complete if c.path in keep)
        for name in os.listdir(output_dir):
            path = os.path.join(output_dir, name)
            if not name.startswith("checkpoint-") or path in keep or not os.path.isdir(path):
                continue
            suffix = name[len("checkpoint-") :]
            if suffix.isdigit() and int(suffix) < oldest_kept:
                logger.info("Deleting older checkpoint %s (save_total_limit=%d)", path, self.trainer.save_total_limit)
                shutil.rmtree(path, ignore_errors=True)


class GIFTTrainer(Trainer):
    """Train a student with GIFT or any loss of the zoo (`GIFTConfig.loss`).

    Soft labels come from a frozen teacher run on the *same augmented batch* the student
    sees (``soft_label_source="teacher"``), or from a stored soft-label column
    (``"dataset"``). The teacher is placed by the Trainer's accelerator in evaluation mode:
    it is never wrapped for gradient synchronisation and never saved with the student.

    Evaluation reports hard-label cross-entropy on the evaluation split as ``eval_loss``
    (comparable across training losses; real test splits carry no soft labels) and the
    metrics of ``compute_metrics`` on the student's logits.

    Checkpoints are marked complete once every process has saved them, and carry the
    identity of the run (loss, seed, dataset fingerprint, schedule): resuming from another
    run's checkpoint is refused unless ``GIFTConfig.resume_force``. ``save_total_limit`` is
    applied by gift_hf after the new checkpoint is complete, so ``self.args.save_total_limit``
    is None and the limit is ``self.save_total_limit``. A loss, logits or soft labels that
    become non-finite stop training with :class:`TrainingDivergedError` naming the step.
    ``train_loss`` in the returned metrics is the mean per-sample training loss of the whole
    run, resumed runs included.

    Args:
        model: the student (e.g. :func:`gift_hf.create_model`).
        args: a :class:`GIFTConfig`.
        teacher_model: a model instance or name/path; defaults to
            ``args.teacher_model_name_or_path``.
        zca: a fitted :class:`~gift_hf.data.augment.ZCA` (or a path to load one) that whitens
            every batch; by default ``args.zca`` loads ``args.zca_path`` or fits on
            ``train_dataset``. It is saved as ``zca.safetensors`` with the model.
        **kwargs: everything ``transformers.Trainer`` takes.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: GIFTConfig | None = None,
        teacher_model: nn.Module | str | None = None,
        data_collator: Any = None,
        zca: ZCA | str | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = GIFTConfig(output_dir="gift_hf_output")
        if not isinstance(args, GIFTConfig):
            raise TypeError(f"args must be a GIFTConfig, got {type(args).__name__}")
        if model is None:
            raise ValueError("GIFTTrainer needs a student model (see gift_hf.create_model)")
        if args.n_gpu > 1:
            raise ValueError(
                f"GIFTTrainer runs one process per device, but this process sees {args.n_gpu} GPUs (torch "
                "DataParallel); launch with `accelerate launch` or `torchrun`, or set CUDA_VISIBLE_DEVICES"
            )
        for name in ("train_dataset", "eval_dataset"):
            splits = kwargs.get(name)
            for key, split in splits.items() if isinstance(splits, dict) else [(None, splits)]:
                if split is not None and hasattr(split, "__len__") and len(split) == 0:
                    label = f"{name}[{key!r}]" if key is not None else name
                    raise ValueError(f"{label} is empty (0 rows); expected at least one example")
        # K students trained as one model (gift_hf.engine.population); None: one ordinary student.
        self.population: StudentPopulation | None = model if isinstance(model, StudentPopulation) else None
        if self.population is not None and len(self.population) > 1:
            refused = population_refusal(args)
            if refused:
                raise ValueError(f"{refused}; train these students one at a time (a StudentPopulation of one)")
        # Trainer's rotation deletes old checkpoints before the new one is complete; ours runs after.
        self.save_total_limit: int | None = args.save_total_limit
        if args.save_total_limit is not None:
            args = _copy_args(args, save_total_limit=None)
        num_classes = num_classes_of(model)
        if data_collator is None:
            data_collator = SoftLabelCollator(num_classes=num_classes)
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)

        self.loss_fn: Loss = args.build_loss()
        self.eval_loss_fn: Loss = get_loss("ce")
        # With several micro-batches per optimizer step (accumulation, or processes) our losses
        # are per-sample sums divided by `num_items_in_batch` (Trainer counts the items only
        # when this is set), so uneven micro-batches weigh each sample once; see `_reduce`. With
        # one, the batch mean is that already, and counting would cost kernels every step.
        self.model_accepts_loss_kwargs = args.gradient_accumulation_steps > 1 or args.world_size > 1

        self.teacher_model: nn.Module | None = None
        if self.loss_fn.needs_teacher and args.soft_label_source == "teacher":
            teacher = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
            if teacher is None:
                raise ValueError(
                    f"loss {args.loss!r} with soft_label_source='teacher' needs a teacher: pass teacher_model= "
                    "or set teacher_model_name_or_path"
                )
            teacher = load_teacher(
                teacher, trust_remote_code=args.trust_remote_code, **(args.teacher_model_init_kwargs or {})
            )
            teacher_classes = num_classes_of(teacher)
            if num_classes is not None and teacher_classes is not None and teacher_classes != num_classes:
                raise ValueError(
                    f"teacher has {teacher_classes} classes but the student has {num_classes}; "
                    "they must predict the same label set"
                )
            # evaluation_mode: placed on the device (and cast for mixed precision where
            # accelerate does so) but never wrapped in DDP/FSDP for training.
            self.teacher_model = self.accelerator.prepare_model(teacher, evaluation_mode=True)
            self.teacher_model.eval()
        # Batch augmentation (DSA, CutMix/MixUp) in the training step; its randomness is keyed
        # by (seed, rank, step), the step set by the monitor callback, so resuming is exact.
        # Student k of a population draws from its own seed, as its separate run would.
        seeds = self.population.seeds if self.population is not None else [args.seed]
        self.augmenters: list[BatchAugmenter | None] = [
            build_augmenter(_copy_args(args, seed=seed) if seed != args.seed else args, num_classes=num_classes)
            for seed in seeds
        ]
        self.augmenter: BatchAugmenter | None = self.augmenters[0] if self.population is None else None
        # Per student of a population, on the device: still training, and the step its loss
        # first became non-finite (0: never). A diverged student leaves the loss; the others go on.
        k = len(self.population) if self.population is not None else 1
        self.alive = torch.ones(k, dtype=torch.bool, device=self.args.device)
        self.diverged_at = torch.zeros(k, dtype=torch.long, device=self.args.device)
        # ZCA whitening of every batch: an explicit `zca`, else `args.zca_path`, else fitted
        # on the training set.
        self.zca: ZCA | None = None
        if zca is not None:
            self.zca = zca if isinstance(zca, ZCA) else ZCA.load(zca)
        elif args.zca:
            if args.zca_path is not None:
                self.zca = ZCA.load(args.zca_path)
            elif self.train_dataset is not None:
                self.zca = fit_zca(self.train_dataset, epsilon=args.zca_epsilon)
            else:
                raise ValueError(
                    "zca=True needs zca_path (a saved run or its zca.safetensors) or a train_dataset to fit on"
                )
        if self.zca is not None:
            self.zca.to(self.args.device)

        # The decoded, device-resident sets (None: the DataLoader path), per role and dataset.
        self._device_sets: dict[tuple[str, int], DeviceImageSet | None] = {}
        self._parameter_count: int | None = None
        self.run_id: str | None = None
        self.monitor = _RunMonitor(self)
        self.add_callback(self.monitor)
        self.add_callback(_CheckpointCallback(self))
        # Every saved student gets its model card (README.md); a callback the caller passed
        # carries what the Trainer cannot know (dataset id, provenance, license).
        if not any(isinstance(cb, ModelCardCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(ModelCardCallback())

    # ------------------------------------------------------------------------ data path
    def device_set(self, dataset: Any, role: str = "training") -> DeviceImageSet | None:
        """``dataset`` decoded once and kept on ``args.device``, or None for the DataLoader path.

        ``args.device_resident``: ``"auto"`` keeps the set on the device when it fits
        (:func:`gift_hf.data.device.device_resident`), ``"always"`` does so whatever its size,
        ``"never"`` never. A dataset without an :class:`~gift_hf.data.images.ImageTransform` set by
        ``with_transform``/``set_transform``, or a collator other than
        :class:`~gift_hf.data.images.SoftLabelCollator`, takes the DataLoader path. The choice is
        logged in one line. Under DDP the main process decodes first (into the cache).
        """
        key = (role, id(dataset))
        if key in self._device_sets:
            return self._device_sets[key]
        mode, collator = self.args.device_resident, self.data_collator
        transform = _image_transform_of(dataset)
        reason = None
        if mode == "never":
            reason = "device_resident='never'"
        elif transform is None:
            reason = "the dataset has no ImageTransform set by with_transform/set_transform to decode it with"
        elif type(collator) is not SoftLabelCollator or collator.topk_fill != 0:
            reason = f"its rows are collated by {type(collator).__name__}"
        if reason is not None:
            if mode == "always":
                raise ValueError(
                    f"device_resident: got 'always' but the {role} set cannot be kept on the device: "
                    f"{reason}; expected 'auto' or 'never'"
                )
            logger.info("%s set: DataLoader path (%s)", role, reason)
            self._device_sets[key] = None
            return None
        columns = dict(
            label_column=collator.label_column,
            soft_label_column=collator.soft_label_column,
            num_classes=collator.num_classes,
            soft_label_kind=collator.soft_label_kind,
        )
        with self.args.main_process_first(desc=f"decoding the {role} set"):
            if mode == "always":
                found = DeviceImageSet.from_dataset(dataset, transform, self.args.device, **columns)
                logger.info(
                    "%s set: device-resident (device_resident='always'): %d images on %s",
                    role,
                    len(found),
                    self.args.device,
                )
            else:
                found = device_resident(dataset, transform, self.args.device, **columns)
        if mode == "auto" and self.args.world_size > 1:
            # Every process takes the same path (a DataLoader shard and a device shard do not
            # partition the set together): one collective, once, after the decoding.
            held = torch.tensor(int(found is not None), device=self.args.device)
            if int(self.accelerator.reduce(held, reduction="sum")) != self.args.world_size:
                if found is not None:
                    logger.info("%s set: DataLoader path (another process cannot keep it on its device)", role)
                found = None
        self._device_sets[key] = found
        if found is None and role == "training" and self.args.dataloader_num_workers == 0:
            hint = dataloader_kwargs(self.args.device, min(4, os.cpu_count() or 1))
            logger.info(
                "%s set: decoded on the fly in this process; set %s to decode in parallel",
                role,
                ", ".join(f"{k}={v}" for k, v in hint.items()),
            )
        return found

    def get_train_dataloader(self):
        """The device-resident loader when :meth:`device_set` keeps the training set on the device, else ``Trainer``'s.

        Each process draws its own shard of every epoch's permutation
        (:class:`~gift_hf.data.device.DeviceBatchSampler`); the loader is not passed through
        ``accelerator.prepare`` (it is sharded and on the device already). ``Trainer`` resumes
        it exactly (``set_epoch`` and batch skipping).
        """
        data = self.device_set(self.train_dataset) if self.train_dataset is not None else None
        args = self.args
        seed = args.data_seed if args.data_seed is not None else args.seed
        if self.population is not None:
            seed = self.population.seeds  # student k's batches: the order its separate run draws
        elif data is None:
            return super().get_train_dataloader()
        sampler = DeviceBatchSampler(
            len(data) if data is not None else len(self.train_dataset),
            args.per_device_train_batch_size,
            seed=seed,
            rank=args.process_index,
            world_size=args.world_size,
            drop_last=args.dataloader_drop_last,
            device=args.device if data is not None else "cpu",
        )
        if (
            data is None
        ):  # K students' batches through the DataLoader path: K·B rows a step, split again in compute_loss
            return PopulationDataLoader(
                self.train_dataset, sampler, self.data_collator, args.dataloader_num_workers, args.dataloader_pin_memory
            )
        return DeviceDataLoader(data, sampler)

    def get_eval_dataloader(self, eval_dataset: Any = None):
        """The evaluation split gathered on the device when it is kept there (one process), else ``Trainer``'s.

        Under DDP ``Trainer``'s loader shards the split and drops the rows repeated to even out
        the shards when gathering predictions.
        """
        dataset = (
            self.eval_dataset[eval_dataset]
            if isinstance(eval_dataset, str)
            else (eval_dataset if eval_dataset is not None else self.eval_dataset)
        )
        if dataset is None or isinstance(dataset, dict) or self.args.world_size > 1:
            return super().get_eval_dataloader(eval_dataset)
        data = self.device_set(dataset, "evaluation")
        if data is None:
            return super().get_eval_dataloader(eval_dataset)
        sampler = DeviceBatchSampler(
            len(data), self.args.per_device_eval_batch_size, shuffle=False, device=self.args.device
        )
        # Prepared (one process: nothing is resharded) so that gathering the predictions knows
        # the last batch's size and eval_loss weighs every row once.
        return self.accelerator.prepare(DeviceDataLoader(data, sampler))

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """``Trainer``'s estimate (6 · parameters · input elements), the parameters counted once, not every step."""
        if self._parameter_count is None:
            model = self.accelerator.unwrap_model(self.model)
            count = getattr(model, "num_parameters", None)
            self._parameter_count = int(
                count(exclude_embeddings=True) if callable(count) else sum(p.numel() for p in model.parameters())
            )
        pixel_values = inputs.get("pixel_values")
        return 6 * self._parameter_count * (pixel_values.numel() if pixel_values is not None else 0)

    # ------------------------------------------------------------------- run identity
    def run_identity(self) -> dict[str, Any]:
        """What a resumed run must share with its checkpoint: loss, seed, data, schedule, batch size."""
        values = self.args.training_settings()  # loss, soft labels, optimizer, schedule, batch size, epochs
        values.update(seed=self.args.seed, data_seed=self.args.data_seed, world_size=self.args.world_size)
        if self.population is not None:
            values.update(students=self.population.seeds, learning_rates=self.population.learning_rates)
        values["train_dataset"] = dataset_fingerprint(self.train_dataset)
        # what the images are made into (size, channels, mean/std): a resume must not change it
        values["preprocessing"] = preprocessing_identity(_image_transform_of(self.train_dataset))
        return json.loads(json.dumps(values, default=str))  # as it reads back from the checkpoint

    def _check_resume(self, checkpoint: str) -> dict[str, Any]:
        """The checkpoint's marker, after checking it is complete and belongs to this run."""
        info = read_json(os.path.join(checkpoint, CHECKPOINT_MARKER))
        force = self.args.resume_force
        if not info:
            message = (
                f"resume_from_checkpoint: {checkpoint!r} is not a complete gift_hf checkpoint (no "
                f"{CHECKPOINT_MARKER}: its save was interrupted, or another program wrote it)"
            )
            if not force:
                raise ValueError(message + "; resume from a complete one, or set resume_force to use it anyway")
            logger.warning("%s; resuming anyway (resume_force)", message)
            return {}
        stored, current = info.get("run", {}), self.run_identity()
        differ = {
            k: (stored.get(k), current.get(k))
            for k in sorted(set(stored) | set(current))
            if stored.get(k) != current.get(k)
        }
        if differ:
            listing = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in differ.items())
            if not force:
                raise ValueError(
                    f"resume_from_checkpoint: {checkpoint!r} was written by a different run ({listing}). Resume "
                    "with the checkpoint's settings, start a new run (another output_dir or overwrite_output_dir), "
                    "or set resume_force to resume anyway"
                )
            logger.warning("resuming from %s of a different run (%s) because resume_force is set", checkpoint, listing)
        return info

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``Trainer.train`` with checked resumes.

        ``resume_from_checkpoint=True`` picks the last complete checkpoint of this run
        (:func:`gift_hf.engine.checkpoints.last_checkpoint`). A checkpoint of another run (other
        loss, seed, dataset, schedule) is refused unless ``args.resume_force``.
        """
        output_dir = self.args.output_dir
        if resume_from_checkpoint is True:
            found: Checkpoint | None = last_checkpoint(output_dir)
            if found is None:
                raise ValueError(
                    f"resume_from_checkpoint=True but output_dir {output_dir!r} has no complete checkpoint of its "
                    "current run"
                )
            resume_from_checkpoint = found.path
        if resume_from_checkpoint:
            info = self._check_resume(str(resume_from_checkpoint))
            self.run_id = info.get("run_id") or current_run_id(output_dir) or uuid.uuid4().hex
            self.monitor.reset(info.get("train_loss_sum", 0.0), info.get("train_loss_count", 0.0))
        else:
            self.run_id = uuid.uuid4().hex
            self.monitor.reset()
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        # Trainer's train_loss covers this call's steps only; the returned metrics give the
        # whole run's (the logged history keeps what the Trainer logged).
        loss_sum, count = self.monitor.totals()
        if count > 0:
            train_loss = loss_sum / count
            output.metrics["train_loss"] = train_loss
            output = output._replace(training_loss=train_loss)
        return output

    # ---------------------------------------------------------- optimizer and schedule
    @staticmethod
    def get_optimizer_cls_and_kwargs(args: Any, model: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
        """The Trainer's optimizer for ``args.optim``; SGD and RMSprop also take ``optim_args``
        (``"momentum=0.9"``), which transformers before 4.5x ignores for them."""
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if optimizer_cls in (torch.optim.SGD, torch.optim.RMSprop) and args.optim_args:
            for item in args.optim_args.replace(" ", "").split(","):
                key, _, value = item.partition("=")
                if key in ("momentum", "dampening", "alpha", "eps", "weight_decay"):
                    kwargs.setdefault(key, float(value))
                elif key == "nesterov":
                    kwargs.setdefault(key, value.lower() in ("true", "1", "yes"))
        return optimizer_cls, kwargs

    def create_optimizer(self):
        """``Trainer.create_optimizer``; with per-student learning rates (a population with
        ``learning_rates``), one parameter group per student and weight-decay rule."""
        population = self.population
        if self.optimizer is not None or population is None or population.learning_rates is None:
            return super().create_optimizer()
        optimizer_cls, kwargs = self.optimizer_cls_and_kwargs or self.get_optimizer_cls_and_kwargs(
            self.args, population
        )
        decay = set(self.get_decay_parameter_names(population))
        groups = []
        for index, lr in enumerate(population.learning_rates):
            prefix = f"students.{index}."
            named = [(n, p) for n, p in population.named_parameters() if n.startswith(prefix) and p.requires_grad]
            groups.append(
                {"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay, "lr": lr}
            )
            groups.append({"params": [p for n, p in named if n not in decay], "weight_decay": 0.0, "lr": lr})
        self.optimizer = optimizer_cls([g for g in groups if g["params"]], **kwargs)
        return self.optimizer

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Every parameter with ``decay_all_parameters`` (the papers' reference code), else the Trainer's rule."""
        if self.args.decay_all_parameters:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """``lr_scheduler_type`` multiplied by ``lr_decay`` at each of ``lr_milestones`` (``MultiStepLR``)."""
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if created and self.args.lr_milestones and self.args.lr_decay != 1:
            if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                raise ValueError(
                    f"lr_milestones: got {self.args.lr_milestones} with lr_scheduler_type "
                    f"{self.args.lr_scheduler_type!r}, which cannot be stepped down; set lr_decay to 1"
                )
            milestones = self.args.lr_milestone_steps(num_training_steps, self.state.num_train_epochs)
            decay = self.args.lr_decay
            # A new LambdaLR whose factors are the schedule's times the step decays (the first
            # one's factors are read, not changed); it starts from the groups' initial_lr.
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                scheduler.optimizer,
                [
                    lambda step, base=base: base(step) * decay ** bisect.bisect_right(milestones, step)
                    for base in scheduler.lr_lambdas
                ],
            )
            self.lr_scheduler = scheduler
        return scheduler

    # ------------------------------------------------------------------------------ ZCA
    def _whiten(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # ZCA is part of the input pipeline: every batch (training, evaluation, prediction)
        # is whitened on its device, before augmentation and before the student and the
        # teacher see it.
        if self.zca is None or "pixel_values" not in inputs:
            return inputs
        x = inputs["pixel_values"].to(self.args.device)
        return {**inputs, "pixel_values": self.zca(x.flatten(0, -4)).view(x.shape)}

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        return super().training_step(model, self._whiten(inputs), *args, **kwargs)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        return super().prediction_step(model, self._whiten(inputs), *args, **kwargs)

    def save_model(self, output_dir: str | None = None, *args: Any, **kwargs: Any) -> None:
        """``Trainer.save_model``, plus ``zca.safetensors`` next to the weights when the run whitens."""
        super().save_model(output_dir, *args, **kwargs)
        # The whitening belongs to the model's inputs: keep it next to the weights so a
        # reloaded run evaluates with the identical transform (GIFTConfig.zca_path).
        if self.zca is not None and self.args.should_save:
            self.zca.save(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save and getattr(self.model, "config", None) is not None:
            save_model_card(self, output_dir)

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """The student's card (:func:`gift_hf.hub.model_card.save_model_card`) in ``output_dir``;
        ``push_to_hub`` uploads it instead of the generic Trainer card."""
        save_model_card(
            self,
            license=license,
            tags=tags,
            model_name=model_name,
            dataset=dataset if isinstance(dataset, str) else None,
        )

    # ------------------------------------------------------------------------------ loss
    def _step(
        self,
        model: nn.Module,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None,
        soft_labels: torch.Tensor | None,
    ) -> StepOutput:
        """The training step (:func:`gift_hf.engine.step.training_step`) with this run's augmenters,
        loss and soft labels: the teacher's logits of the augmented batch, or the stored ones."""
        online = self.args.soft_label_source == "teacher"
        if self.loss_fn.needs_teacher and not online:
            if soft_labels is None:
                raise KeyError(
                    "soft_label_source='dataset' but the batch has no 'soft_labels': the dataset needs a "
                    "'soft_label' column (or its top-k pair); see gift_hf.data.relabel"
                )
            num_classes = num_classes_of(
                self.population if self.population is not None else self.accelerator.unwrap_model(model)
            )
            if num_classes is not None and soft_labels.shape[-1] != num_classes:
                raise ValueError(
                    f"soft_labels has shape {tuple(soft_labels.shape)} but the student predicts "
                    f"{num_classes} classes (soft-label width {soft_labels.shape[-1]} != number of "
                    f"classes {num_classes})"
                )
        return training_step(
            model,
            pixel_values,
            labels,
            soft_labels,
            loss_fn=self.loss_fn,
            augmenters=self.augmenters,
            teacher=self.teacher_model if online else None,
            soft_label_kind=self.args.soft_label_kind,
        )

    def _reduce(self, per_sample: torch.Tensor, num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
        """The loss of a micro-batch as ``Trainer`` expects it when a model takes ``num_items_in_batch``.

        ``num_items_in_batch`` counts the items of the whole optimizer step (every
        accumulated micro-batch, and every process when ``average_tokens_across_devices``,
        in which case DDP's gradient averaging is undone by the process count): so uneven
        micro-batches weigh each sample equally. Without it (evaluation), the batch mean.
        """
        if num_items_in_batch is None:
            if self.model.training and self.args.gradient_accumulation_steps > 1:
                # Trainer counts items from the batch's `labels`; without the count, the scaling of
                # accumulated micro-batches differs between transformers releases.
                raise ValueError(
                    f"gradient_accumulation_steps={self.args.gradient_accumulation_steps} needs a label column in "
                    "the training set (Trainer counts each step's samples from it); add one, or set "
                    "gradient_accumulation_steps=1 and a larger per_device_train_batch_size"
                )
            return per_sample.mean()
        loss = per_sample.sum() / num_items_in_batch
        if self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        return loss

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        if "pixel_values" not in inputs:
            raise KeyError(f"batch has no 'pixel_values' (got {sorted(inputs)}); set an ImageTransform on the dataset")
        pixel_values = inputs["pixel_values"]
        labels = inputs.get("labels")
        soft_labels = inputs.get("soft_labels")
        if self.population is not None:
            return self._population_loss(model, pixel_values, labels, soft_labels, return_outputs, num_items_in_batch)
        if model.training:
            per_sample, logits, targets = self._step(model, pixel_values, labels, soft_labels)
            self.monitor.record(per_sample, logits, targets, step=self.state.global_step + 1)
        else:
            logits = model(pixel_values=pixel_values).logits
            per_sample = self.eval_loss_fn(logits, None, labels, reduction="none")
        loss = self._reduce(per_sample, num_items_in_batch)
        return (loss, ImageClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    def _population_loss(
        self,
        model: nn.Module,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None,
        soft_labels: torch.Tensor | None,
        return_outputs: bool,
        num_items_in_batch: torch.Tensor | int | None,
    ):
        """The loss of K students: the sum of each student's mean loss, so each student's
        gradient is that of its own run. Evaluation: every student on the same batch, logits
        returned as ``(B, K, classes)`` (gathered along the batch) and the hard-label CE
        averaged over the students."""
        k = len(self.population)
        if not model.training:
            logits = model(pixel_values=pixel_values).logits  # (K, B, C)
            per_sample = (
                self.eval_loss_fn(
                    logits.flatten(0, 1), None, labels.repeat(k) if labels is not None else None, reduction="none"
                )
                .view(k, -1)
                .mean(0)
            )
            loss = self._reduce(per_sample, num_items_in_batch)
            logits = logits.transpose(0, 1)
            return (loss, ImageClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss
        if pixel_values.dim() == 4:  # the DataLoader path: K·B rows, student k's batch in rows k·B … (k+1)·B − 1
            pixel_values = pixel_values.view(k, -1, *pixel_values.shape[1:])
            labels = labels.view(k, -1, *labels.shape[1:]) if labels is not None else None
            soft_labels = soft_labels.view(k, -1, *soft_labels.shape[1:]) if soft_labels is not None else None
        # (K, B) losses and (K, B, C) logits; the teacher relabels the K·B images in one forward
        per_sample, logits, targets = self._step(model, pixel_values, labels, soft_labels)
        step = self.state.global_step + 1
        # On the device: a student whose loss is non-finite leaves the loss for good (no
        # gradient from then on); the step is kept for its report.
        ok = torch.isfinite(per_sample.detach()).all(1) & torch.isfinite(logits.detach()).flatten(1).all(1)
        self.diverged_at.masked_fill_(self.alive & ~ok, step)
        self.alive &= ok
        keep = self.alive.view(k, 1)
        per_sample = torch.where(keep, per_sample, 0.0)
        masked_targets = torch.where(keep.unsqueeze(-1), targets, 0.0) if targets is not None else None
        self.monitor.record(per_sample, torch.where(keep.unsqueeze(-1), logits.detach(), 0.0), masked_targets, step)
        if num_items_in_batch is None:
            if self.args.gradient_accumulation_steps > 1:
                return self._reduce(per_sample.mean(1), None)  # raises: accumulation needs the item count
            loss = per_sample.mean(1).sum()
        else:  # the Trainer counted K·B items a micro-batch: each student's share is 1/K of them
            loss = per_sample.sum() * k / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        return (loss, ImageClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    def failed_students(self) -> dict[int, int]:
        """``{student index: first non-finite step}`` of the population's diverged students, over
        every process (a host read)."""
        rows = self.accelerator.gather(self.diverged_at[None]).view(-1, len(self.diverged_at)).tolist()
        failed: dict[int, int] = {}
        for row in rows:
            for index, step in enumerate(row):
                if step > 0:
                    failed[index] = min(failed.get(index, step), step)
        return failed


class PopulationDataLoader(torch.utils.data.DataLoader):
    """K students' batches from a dataset that is not kept on the device: each step's ``(K, B)``
    indices (a :class:`~gift_hf.data.device.DeviceBatchSampler` with K seeds, on the CPU) read as
    one batch of K·B rows through the collator; ``GIFTTrainer`` splits it into the K batches."""

    def __init__(
        self, dataset: Any, sampler: DeviceBatchSampler, collate_fn: Any, num_workers: int = 0, pin_memory: bool = False
    ) -> None:
        super().__init__(
            dataset,
            batch_sampler=_FlatBatches(sampler),
            collate_fn=collate_fn,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.sampler.set_epoch(epoch)


class _FlatBatches:
    """A batch sampler of row lists from a (K, B) index sampler."""

    def __init__(self, sampler: DeviceBatchSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for indices in self.sampler:
            yield indices.reshape(-1).tolist()


def population_refusal(args: GIFTConfig) -> str | None:
    """Why ``args`` cannot train several students as one population (one line), or None.

    Everything else (every optimizer and schedule, warm-up, ``max_steps``, mixed precision,
    gradient accumulation, ZCA, several processes) trains K students together.
    """
    if args.max_grad_norm and args.max_grad_norm > 0:
        return (
            f"max_grad_norm={args.max_grad_norm}: gradient clipping scales by the norm of all the students' "
            "gradients together, so students trained together would not be clipped as separate runs"
        )
    return None


def _image_transform_of(dataset: Any) -> ImageTransform | None:
    """The :class:`ImageTransform` a ``datasets.Dataset`` was given by ``with_transform``/``set_transform``."""
    fmt = getattr(dataset, "format", None)
    if not isinstance(fmt, dict) or fmt.get("type") != "custom" or not getattr(dataset, "_fingerprint", None):
        return None
    transform = (fmt.get("format_kwargs") or {}).get("transform")
    return transform if isinstance(transform, ImageTransform) else None


def _copy_args(args: GIFTConfig, **changes: Any) -> GIFTConfig:
    """A shallow copy of ``args`` with ``changes`` (the caller's object is left as it was)."""
    new = copy.copy(args)
    for name, value in changes.items():
        setattr(new, name, value)
    return new
