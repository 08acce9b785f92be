"""Components of a report: separate detectors only where the kind has them.

A uitd (user information transmission device) reports for the components of its fire panels
(`system_type:system_addr:component_addr`): each is a detector of its own (`Reading.detector_id`).
Other kinds have no components: a `component` in their report is kept in `extra["component"]` but
does not make a detector, or one smoke detector naming two components would look like two
detectors agreeing on a fire (CONTRACT §8) and fill the fleet with detectors nobody registered.
"""

from __future__ import annotations

from collections.abc import Iterable

from devices.kinds import Kind
from devices.reading import Reading

#: Kinds whose reports may name components that count as detectors.
COMPONENT_KINDS = frozenset({Kind.uitd})
#: Where a component of another kind is kept.
COMPONENT_EXTRA = "component"


def keep_components_of_panels(readings: Iterable[Reading]) -> None:
    """Move the `component` of each reading whose kind has none into its `extra` (in place)."""
    for r in readings:
        if r.component is not None and r.kind not in COMPONENT_KINDS:
            r.extra = {**r.extra, COMPONENT_EXTRA: r.component}
            r.component = None
