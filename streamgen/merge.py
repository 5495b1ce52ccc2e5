"""One model for a consumer group: members merge what they learn through the checkpoint store.

Each member of a consumer group trains its own copy of the model on its own partitions.
Without merging, the last member to write ``model`` wins and nothing the others learned
survives a restart. Here the group keeps one **group model** (store name ``group/model``: a
version number and the weights) and every member, at each checkpoint (:meth:`GroupModel.sync`):

1. **publishes** what it learned since it last adopted a group version: the change of its
   weights (``delta = w - anchor``, ``anchor`` = the group weights it adopted), how many
   training steps that took, and the version it started from (``members/<member id>``);
2. if it is the **coordinator** (the member that owns the group's first partition: Kafka
   gives that partition to exactly one member at a time), **merges** every contribution made
   from the current version into the next one, federated averaging weighted by training
   steps: ``w[v+1] = w[v] + Σ_j n_j delta_j / Σ_j n_j``;
3. **adopts** a group version newer than its own, keeping its own progress since it
   published: ``w = w[v'] + (w - anchor - delta_published)`` when its contribution is in
   ``v'``, else ``w = w[v'] + (w - anchor)`` (its whole progress, which it publishes again from
   ``v'``). A member that did not train since it published ends with exactly ``w[v']``, so an
   idle group agrees on one set of weights after one round.

Consistency: a member's weights lag the group's by at most two checkpoint intervals (its
contribution is merged at the coordinator's next checkpoint and adopted at its own next one);
a contribution made from an older version than the current one is not merged (it was
superseded by the member's own adoption, which re-applies it on the newer version). The
optimizer state, replay buffer and per-key state stay with each member. A new or restarted
member adopts the newest group version when it starts (:meth:`GroupModel.start`).

Examples
--------
>>> import torch
>>> from streamgen.io.store import CheckpointStore, LocalBackend
>>> import tempfile
>>> store = CheckpointStore(LocalBackend(tempfile.mkdtemp()), "file")
>>> class Member:  # what the engine provides
...     def __init__(self, w): self.w, self.steps = {"p": torch.tensor([w])}, 0
...     def model_weights(self): return {k: v.clone() for k, v in self.w.items()}
...     def load_model_weights(self, w): self.w = {k: v.clone() for k, v in w.items()}
...     @property
...     def step(self): return self.steps
>>> a, b = Member(0.0), Member(0.0)
>>> ga, gb = GroupModel(store, "a"), GroupModel(store, "b")
>>> ga.start(a), gb.start(b)
(0, 0)
>>> a.w["p"] += 3.0; a.steps = 30    # a learned 30 steps' worth
>>> b.w["p"] += 1.0; b.steps = 10    # b learned 10 steps' worth
>>> _ = gb.sync(b, coordinator=False)
>>> _ = ga.sync(a, coordinator=True)  # a merges both: 0 + (30*3 + 10*1) / 40 = 2.5
>>> _ = gb.sync(b, coordinator=False)  # b adopts version 1
>>> float(a.w["p"]), float(b.w["p"]), ga.version, gb.version
(2.5, 2.5, 1, 1)
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from streamgen.core.checkpoint import FORMAT_VERSION
from streamgen.io.store import CheckpointStore

__all__ = ["GroupModel", "Learner", "SyncResult", "default_member_id", "weights_digest"]

log = logging.getLogger("streamgen.merge")

GROUP = "group/model"
MEMBERS = "members/"

Weights = dict[str, torch.Tensor]


class Learner(Protocol):
    """What a member's engine offers the merge (see :class:`~streamgen.core.engine.Engine`)."""

    def model_weights(self) -> Weights: ...

    def load_model_weights(self, weights: Weights) -> None: ...

    @property
    def step(self) -> int:
        """Training steps the model has taken (over its whole life)."""
        ...


def default_member_id() -> str:
    """``<hostname>-<process id>`` (a pod's name in Kubernetes), as a store-safe name."""
    import os
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:100] or "member"
    return f"{host}-{os.getpid()}"


def weights_digest(weights: Weights) -> str:
    """A short SHA-256 of the weights (names, shapes and float32 bytes), to compare members."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _sub(a: Weights, b: Weights) -> Weights:
    return {k: a[k] - b[k] for k in a}


def _add(a: Weights, b: Weights) -> Weights:
    return {k: a[k] + b[k] for k in a}


def _cpu(w: Weights) -> Weights:
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in w.items()}


@dataclass
class SyncResult:
    """What one :meth:`GroupModel.sync` did."""

    published_steps: int = 0
    merged: int = 0  # contributions merged into a new version (coordinator only)
    adopted: int | None = None  # the version adopted, if a newer one was
    version: int = 0  # the member's version after the sync
    stale_contributions: list[str] = field(default_factory=list)


class GroupModel:
    """A member's side of the group model (module docstring).

    Parameters
    ----------
    store
        The group's checkpoint store (``checkpoint.dir``).
    member_id
        This member, unique in the group (a restarted member may reuse its id or take a
        new one: its old contribution then ages out).
    forget_after_s
        The coordinator deletes contributions older than this (members that left).
    """

    def __init__(self, store: CheckpointStore, member_id: str,
                 forget_after_s: float = 3600.0) -> None:
        if not member_id or "/" in member_id:
            raise ValueError(f"member id must be a non-empty name without '/': {member_id!r}")
        self.store = store
        self.member_id = member_id
        self.forget_after_s = forget_after_s
        self.version = 0
        self._anchor: Weights | None = None  # the group weights adopted (version self.version)
        self._anchor_steps = 0  # learner.step when they were adopted
        # Deltas published from self.version, by publication number: the coordinator may
        # merge any of them (the newest one it read), and the group version says which.
        self._published: dict[int, tuple[Weights, int]] = {}
        self._seq = 0

    # -- life cycle ------------------------------------------------------------------------
    def start(self, learner: Learner) -> int:
        """Adopt the newest group version, if any (a new or restarted member); else make the
        member's current weights version 0's anchor. Returns the version."""
        group = self.store.load(GROUP)
        if group is not None:
            learner.load_model_weights(group["weights"])
            self.version = int(group["version"])
            log.info("group model version %d adopted at start", self.version)
        else:
            self.version = 0
        self._anchor = _cpu(learner.model_weights())
        self._anchor_steps = learner.step
        self._published = {}
        return self.version

    def sync(self, learner: Learner, coordinator: bool) -> SyncResult:
        """Publish, merge (``coordinator``), adopt; see the module docstring."""
        if self._anchor is None:
            self.start(learner)
        assert self._anchor is not None
        res = SyncResult()
        now_w = _cpu(learner.model_weights())
        steps = learner.step - self._anchor_steps
        delta = _sub(now_w, self._anchor)
        if steps > 0:
            self._seq += 1
            self.store.save(MEMBERS + self.member_id, {
                "format": FORMAT_VERSION, "kind": "member-delta", "member": self.member_id,
                "base": self.version, "seq": self._seq, "steps": int(steps), "delta": delta,
                "time": time.time(),
            })
            self._published[self._seq] = (delta, steps)
            res.published_steps = steps
        # The coordinator has the newest group version at hand (the one it wrote or read).
        if coordinator:
            res.merged, res.stale_contributions, group = self._merge()
        else:
            group = self.store.load(GROUP)
        if group is not None and int(group["version"]) > self.version:
            gw = {k: v.to(torch.float32) for k, v in group["weights"].items()}
            # Which of this member's contributions made from its version the group holds.
            merged = group.get("merged", {}).get(self.member_id)
            seq = int(merged[1]) if merged and int(merged[0]) == self.version else None
            got = self._published.get(seq) if seq is not None else None
            # Keep the progress the group version does not hold: since that contribution,
            # or all of it.
            keep, keep_steps = (_sub(delta, got[0]), steps - got[1]) if got else (delta, steps)
            learner.load_model_weights(_add(gw, keep))
            self.version = int(group["version"])
            self._anchor = gw
            self._anchor_steps = learner.step - keep_steps
            self._published = {}
            res.adopted = self.version
        res.version = self.version
        return res

    # -- the coordinator -------------------------------------------------------------------
    def _merge(self) -> tuple[int, list[str], dict[str, Any] | None]:
        """Merge the contributions made from the current group version into the next one.
        Returns how many were merged, the members aged out, and the newest group version
        (the one written, else the one read; None while there is none)."""
        group = self.store.load(GROUP)
        version = int(group["version"]) if group is not None else 0
        base = group["weights"] if group is not None else self._anchor
        assert base is not None
        now = time.time()
        total, acc, merged_from, stale = 0, None, {}, []
        for name in self.store.names(MEMBERS):
            c = self.store.load(name)
            if c is None:
                continue
            age = now - float(c.get("time", 0.0))
            if age > self.forget_after_s:
                stale.append(str(c.get("member", name)))
                self.store.delete(name)
                continue
            if int(c.get("base", -1)) != version or int(c.get("steps", 0)) <= 0:
                continue  # made from an older version (re-applied by its member) or empty
            n = int(c["steps"])
            d = c["delta"]
            if set(d) != set(base) or any(d[k].shape != base[k].shape for k in d):
                log.warning("contribution of member %s does not match the model; skipped",
                            c.get("member"))
                continue
            acc = {k: n * d[k].to(torch.float32) for k in d} if acc is None else {
                k: acc[k] + n * d[k].to(torch.float32) for k in acc}
            total += n
            merged_from[str(c["member"])] = [version, int(c.get("seq", 0))]
        if acc is None or total == 0:
            return 0, stale, group
        merged = {k: base[k].to(torch.float32) + acc[k] / total for k in base}
        new = {
            "format": FORMAT_VERSION, "kind": "group-model", "version": version + 1,
            "weights": merged, "merged": merged_from, "steps": total, "time": now,
            "digest": weights_digest(merged),
        }
        self.store.save(GROUP, new)
        log.info("group model version %d merged from %d members (%d steps)", version + 1,
                 len(merged_from), total)
        return len(merged_from), stale, new
