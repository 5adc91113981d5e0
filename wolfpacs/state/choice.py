"""The choice of a worker for a new study: one pure rule, for the router and the store.

:func:`least_loaded` is the rule (see README, "Routing"): away from the
workers to ``avoid`` if another is possible, healthy ones first, then the
fewest open studies per unit of capacity, then the fewest open studies,
then the first by name. It is pure (plain data in, a candidate out), so
the store applies it inside the transaction that creates a route
(:meth:`~wolfpacs.state.placement.RoutePlacement.create_route`) and the
router's :func:`~wolfpacs.node.router.choose_worker` is the same rule on
configured workers. :class:`Candidate` is what the store needs to know of
a worker, :class:`Choice` of a choice to make: plain data that crosses actors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "Choice", "least_loaded"]


@dataclass(frozen=True)
class Candidate:
    """A worker a new study may go to: its name, its capacity, whether it answers now.

    ``healthy`` is the asking node's knowledge (its sender's last C-ECHO or
    delivery): a worker known down is taken only if every candidate is.
    """

    name: str
    capacity: int = 1
    healthy: bool = True


@dataclass(frozen=True)
class Choice:
    """A worker to choose for a new route, as the caller asks the store to.

    ``candidates``: the pool's workers that may take a new study (the
    caller's active ones). ``cutoff``: a study active since then is open
    (``time.time()`` seconds, as ``at``). ``at``: the new route's time.
    ``removed``: the worker the caller found on the study's route, no longer
    configured, to move the route from (None: a new study).
    """

    candidates: tuple[Candidate, ...]
    cutoff: float
    at: float
    removed: str | None = None


def least_loaded(
    candidates: Sequence[Candidate],
    open_studies: Mapping[str, int],
    avoid: Collection[str] = (),
) -> Candidate:
    """The candidate a new study goes to, by the rule of the module.

    ``open_studies``: each candidate's open studies (missing: none).
    ``avoid``: workers holding a study of the same UID for another client
    (its results would be ambiguous), taken only if no other candidate is.

    Raises:
        ValueError: no candidate.
    """
    if not candidates:
        raise ValueError("no candidate worker")
    allowed = [c for c in candidates if c.name not in avoid] or list(candidates)
    healthy = [c for c in allowed if c.healthy] or allowed
    return min(
        healthy,
        key=lambda c: (
            open_studies.get(c.name, 0) / c.capacity,
            open_studies.get(c.name, 0),
            c.name,
        ),
    )
