"""The check every tool runs after training: whether the modalities mix in the joint latent.

A method whose latent embeds two or more modalities (or datasets) in one space declares a
:class:`MixingCheck` on its tool. After training, and before anything is written, the driver
measures :func:`scx.metrics.cross_modality_neighbor_rate` on that latent, keeps the result for
the record ``uns[key_added]["mixing"]``, logs it, and once the results are written warns when
the rate is below :data:`MIXING_THRESHOLD`: the modalities stay apart, and the warning says what
to try. The check never fails a run: if it cannot be computed, a log line says why and the record
has no ``"mixing"`` entry. ``check_mixing=False`` turns it off.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Below this cross-modality neighbour rate the modalities count as apart and the tool warns.
#: 0 means no cell has a neighbour of another modality, 1 perfect mixing. Correct runs on the
#: synthetic data of the tests score 0.5–1; runs that do not align score 0–0.06 (see the
#: conventions page), so 0.2 leaves a wide margin on both sides.
MIXING_THRESHOLD = 0.2
#: Neighbours per cell of the check (the metric's default).
MIXING_NEIGHBORS = 15
#: Cells of each modality the check scores at most (subsampled reproducibly from the seed).
MIXING_MAX_CELLS = 2000

GENERIC_HINT = (
    "Train longer, and check that the modalities hold the same cell populations and that their "
    "features are linked as the method expects."
)


@dataclass(frozen=True)
class MixingCheck:
    """Which latent a tool checks for mixing, and what to try when it is not mixed.

    Attributes
    ----------
    embedding
        ``.obsm`` key of the checked latent, with ``{key_added}`` (e.g. ``"X_{key_added}"``);
        the :class:`~scx.base.Outputs` must hold it as ``{modality: cells × d}``.
    hint
        What the warning suggests, with ``{key_added}`` allowed.
    threshold
        The rate below which the tool warns; ``None`` records the rate without ever warning,
        for a latent whose correct runs keep the modalities' fine structure apart.
    groups
        What the embedded groups are, in the warning (``"modalities"``, ``"datasets"``).
    """

    embedding: str = "X_{key_added}"
    hint: str = GENERIC_HINT
    threshold: float | None = MIXING_THRESHOLD
    groups: str = "modalities"


def mixing_doc(check: MixingCheck) -> str:
    """The ``check_mixing`` entry of a tool's docstring, for this tool's check."""
    latent = check.embedding.format(key_added="{key_added}")
    verdict = (
        f"and warn when the {check.groups} stay apart (rate below {check.threshold})"
        if check.threshold is not None
        else "without ever warning: a correct run of this method keeps the fine structure of "
        f"the {check.groups} apart, so the rate is for reading, not a verdict"
    )
    return (
        f"check_mixing\n    After training, measure how well the {check.groups} mix in "
        f"``obsm[f'{latent}']`` (:func:`scx.metrics.cross_modality_neighbor_rate`), store it "
        f"in ``uns[key_added]['mixing']`` {verdict}. ``False`` skips the check."
    )


def mixing_record(
    check: MixingCheck, obsm: Mapping[str, Any], key_added: str, *, seed: int, function: str
) -> dict[str, Any] | None:
    """Measure the mixing of ``obsm[check.embedding]``; the record, or ``None`` if not measured.

    Never raises: a latent that cannot be measured (one modality only, NaN values…) is logged
    and gives ``None``.
    """
    from scx.metrics._mixing import neighbor_rates

    key = check.embedding.format(key_added=key_added)
    try:
        parts = obsm.get(key)
        if not isinstance(parts, Mapping) or len(parts) < 2:
            logger.debug("%s: no mixing check, `%s` is not a latent of modalities.", function, key)
            return None
        arrays = [np.asarray(parts[m]) for m in parts]
        groups = np.repeat(
            np.array([str(m) for m in parts], dtype=object), [len(a) for a in arrays]
        )
        names, rates = neighbor_rates(
            np.concatenate(arrays),
            groups,
            n_neighbors=MIXING_NEIGHBORS,
            max_cells=MIXING_MAX_CELLS,
            seed=seed,
        )
    except Exception as err:  # the check must never fail a run
        logger.warning("%s: could not measure the mixing of `%s`: %s", function, key, err)
        return None
    rate = float(np.mean(rates))
    order = [str(m) for m in parts]
    by_name = {str(m): float(r) for m, r in zip(names, rates, strict=True)}
    record = {
        "rate": rate,
        "per_modality": {m: by_name[m] for m in order},
        "groups": order,
        "embedding": key,
        "n_neighbors": MIXING_NEIGHBORS,
        "threshold": check.threshold,
        # None: this latent has no threshold, its rate is recorded, not judged
        "mixed": None if check.threshold is None else bool(rate >= check.threshold),
    }
    logger.info(
        "%s: cross-modality neighbour rate of `%s`: %.2f (1 ≈ mixed, 0 = apart; %d neighbours).",
        function,
        key,
        rate,
        MIXING_NEIGHBORS,
    )
    return record


def warn_if_apart(
    check: MixingCheck, record: Mapping[str, Any] | None, key_added: str, *, function: str
) -> None:
    """Warn (``UserWarning``) when ``record`` says the modalities stay apart."""
    if record is None or record["mixed"] is not False:
        return
    per = ", ".join(f"{m} {r:.2f}" for m, r in record["per_modality"].items())
    warnings.warn(
        f"{function}: the {check.groups} {record['groups']} stay apart in the joint latent "
        f"`{record['embedding']}`: cross-modality neighbour rate {record['rate']:.2f} ({per}; "
        f"1 ≈ well mixed, 0 = fully apart; below {record['threshold']} warns); a UMAP of it "
        f"with the {check.groups} coloured shows it. {check.hint.format(key_added=key_added)} The "
        f"numbers are in `.uns[{key_added!r}]['mixing']`; `check_mixing=False` turns this check "
        "off.",
        UserWarning,
        stacklevel=4,
    )
