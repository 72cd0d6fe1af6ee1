"""The contract between a method's network and the code that trains, evaluates and describes it.

Every method builds a :class:`TaskNetwork`: ``forward(image)`` -> {task: raw prediction}. What the trainer
and the tools need to know about it, the network says itself (timm's ``no_weight_decay()`` pattern), so
no caller probes attributes or classifies parameters by their names:

* :meth:`param_groups` -- AdamW groups: pretrained weights at the backbone learning rate, new ones at the
  base rate, no weight decay on 1-D tensors and embeddings;
* :meth:`components` -- which part of the data flow each parameter belongs to (the parameter table);
* :meth:`affinity_matrix` -- the TROA matrix, or None for methods that learn none; with
  :attr:`capture_affinity` and :meth:`update_affinity` for the training loop;
* :meth:`set_speed_options` -- activation checkpointing and channels-last;
* :meth:`freeze_tasks` -- zero-shot tasks that get no gradient step; :meth:`freeze_shared` -- adding a task;
* :meth:`frozen_pretrained_keys` -- what an adapter-only checkpoint leaves out (rebuilt from the backbone's file).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn


class TaskNetwork(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every method's network. Subclasses set ``tasks`` and implement the hooks."""

    tasks: list[str]
    #: the trainer sets this to False on steps where TROA does not update (``model.troa.every > 1``)
    capture_affinity: bool = True

    # -- what the network is made of ----------------------------------------------------------------
    @abc.abstractmethod
    def pretrained_parameters(self) -> set[str]:
        """Names of trainable parameters that start from pretrained values (fine-tuned at ``train.backbone_lr``);
        everything else that trains is new (``train.lr``)."""
        ...

    @abc.abstractmethod
    def no_weight_decay(self) -> set[str]:
        """Names of parameters of more than one dimension trained without weight decay (embeddings)."""
        ...

    @abc.abstractmethod
    def components(self) -> dict[str, str]:
        """Parameter name -> component of the data flow (``backbone prefix``, ``TSN``, ``decoder``, ...)."""
        ...

    def frozen_pretrained_keys(self) -> set[str]:
        """State-dict keys holding backbone weights exactly as the pretrained file gives them: frozen, never
        trained. An adapter-only checkpoint leaves them out and rebuilds them from that file. Empty by
        default (a method that fine-tunes its backbone stores everything)."""
        return set()

    def param_groups(self, lr: float, backbone_lr: float | None, weight_decay: float) -> list[dict]:
        """AdamW parameter groups of the trainable parameters, in parameter order: pretrained ones at
        ``backbone_lr`` (None: ``lr``), new ones at ``lr``; no weight decay on 1-D tensors (biases, norms)
        and on :meth:`no_weight_decay`."""
        pretrained, no_decay = self.pretrained_parameters(), self.no_weight_decay()
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            rate = (backbone_lr or lr) if name in pretrained else lr
            decay = 0.0 if p.ndim <= 1 or name in no_decay else weight_decay
            groups.setdefault((rate, decay), []).append(p)
        return [{"params": ps, "lr": rate, "weight_decay": wd} for (rate, wd), ps in groups.items()]

    # -- per-task state (init_from with another task list) ---------------------------------------------
    def task_prefixes(self) -> dict[str, str]:
        """State-dict prefix -> task, for the parts that belong to one task (its head, its decoder, ...)."""
        return {}

    def task_rows(self) -> dict[str, int]:
        """State-dict key -> how many leading dimensions are indexed by task (1: rows, e.g. the task
        embeddings; 2: rows and columns, e.g. the affinity matrix)."""
        return {}

    def load_task_state(self, state: dict[str, torch.Tensor], source_tasks: list[str]) -> list[str]:
        """Load a state dict saved for ``source_tasks`` into this network, matching tasks by name: a task
        the source knew gets its parts and rows; a new task keeps its fresh initialisation; a source task
        this network does not predict is dropped. Everything else must match exactly. Returns the new tasks.
        A key that fits nowhere is a ValueError naming it."""
        own = self.state_dict()
        prefixes, rows = self.task_prefixes(), self.task_rows()
        index = {t: i for i, t in enumerate(source_tasks)}
        kept = [t for t in self.tasks if t in index]
        loaded: dict[str, torch.Tensor] = {}
        for key, value in own.items():
            task = next((t for p, t in prefixes.items() if key.startswith(p)), None)
            if task is not None:
                if task in index:
                    if key not in state:
                        raise ValueError(f"the source has no '{key}' for task '{task}'")
                    loaded[key] = state[key]
                continue
            if key not in state:
                raise ValueError(f"the source has no '{key}'")
            if key in rows:
                mine = [self.tasks.index(t) for t in kept]
                theirs = [index[t] for t in kept]
                merged = value.clone()
                if rows[key] == 2:
                    merged[torch.tensor(mine)[:, None], torch.tensor(mine)[None, :]] = \
                        state[key][torch.tensor(theirs)[:, None], torch.tensor(theirs)[None, :]]
                else:
                    merged[mine] = state[key][theirs]
                loaded[key] = merged
            elif state[key].shape != value.shape:
                raise ValueError(f"'{key}' has shape {tuple(state[key].shape)} in the source and {tuple(value.shape)} "
                                 "here")
            else:
                loaded[key] = state[key]
        self.load_state_dict({**own, **loaded}, strict=True)
        return [t for t in self.tasks if t not in index]

    # -- task affinity (TROA) ---------------------------------------------------------------------------
    def affinity_matrix(self) -> torch.Tensor | None:
        """The learned task affinity A (T, T), ``A[i, j]`` = effect of task i on task j; None for methods
        that learn none."""
        return None

    def update_affinity(self, loss_weights: torch.Tensor, present: torch.Tensor | None = None,
                        samples: int | None = None) -> bool:
        """After ``loss.backward()``: fold the captured per-task gradients into the affinity (of the first
        ``samples`` images of the batch). Returns whether anything was updated."""
        return False

    # -- training options -------------------------------------------------------------------------------
    @abc.abstractmethod
    def set_speed_options(self, activation_checkpointing: bool = False, channels_last: bool = False) -> None:
        """``train.activation_checkpointing`` and ``train.channels_last``."""
        ...

    @abc.abstractmethod
    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks: the parameters that only serve them get no gradient step."""
        ...

    def freeze_shared(self) -> None:
        """Adding a task to a trained model: every parameter that is not one task's own part
        (:meth:`task_prefixes`) or a per-task row (:meth:`task_rows`) stops training. With
        :meth:`freeze_tasks` on the old tasks, only the new tasks' heads, decoders and rows still train."""
        prefixes, rows = tuple(self.task_prefixes()), self.task_rows()
        for name, p in self.named_parameters():
            if not name.startswith(prefixes) and name not in rows:
                p.requires_grad_(False)
