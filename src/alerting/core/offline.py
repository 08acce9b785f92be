"""Offline devices and NB cell outages (CONTRACT §8 faults).

`devices.fleet.Fleet.sweep` finds the devices gone silent (2.5 heartbeats) and stamps
`offline_since_ms`; here they become alarms. A device newly offline whose NB cell counts
`outage_devices` (20) or more devices offline since a moment within the `outage_window_s`
(10 min) up to its own is part of a cell outage: those devices fold into one `network_outage`
alarm keyed `cell:<cell_id>` instead of one `offline` alarm each, and the ones that already had
their own offline alarm get it cleared (rule `network_outage`). The window looks back only, so
the devices of an outage went offline within 10 minutes of each other (sweeps declare devices
in the order they fall silent, so a newly offline device is the latest of its cluster). The
outage clears when every device folded into it is heard again.

State is per slot (how its offline state was reported) and per cell (devices of its outage
still offline); it lives in memory, so after a restart a returning device's offline alarm is
cleared by device key and an outage alarm left open is resolved by an operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerting.core.timeline import Timeline, covered, run_ends
from devices.fleet import Fleet

UNKNOWN, OWN, IN_OUTAGE = 0, 1, 2  # how a slot's offline state was reported


@dataclass(slots=True)
class OfflineState:
    mode: np.ndarray  # int8 per slot
    cell: np.ndarray  # int32 per slot: the cell of the outage it is folded into, -1
    members: np.ndarray  # int64 per cell: devices of its outage still offline

    @classmethod
    def empty(cls, capacity: int) -> OfflineState:
        return cls(np.zeros(capacity, np.int8), np.full(capacity, -1, np.int32), np.zeros(16, np.int64))

    def grow(self, capacity: int, cells: int) -> None:
        n = self.mode.shape[0]
        if capacity > n:
            more = OfflineState.empty(max(capacity, 2 * n))
            more.mode[:n], more.cell[:n] = self.mode, self.cell
            self.mode, self.cell = more.mode, more.cell
        have = self.members.shape[0]
        if cells > have:
            self.members = np.concatenate([self.members, np.zeros(max(cells, 2 * have) - have, np.int64)])


@dataclass(slots=True)
class WentOffline:
    own: np.ndarray  # slots that get their own offline alarm
    outage: np.ndarray  # slots newly folded into their cell's outage, sorted by cell
    outage_cells: np.ndarray  # the cell of each of `outage`
    folded: np.ndarray  # of `outage`, those offline before this sweep (their own alarm is cleared)


def _unique_slots(slots: np.ndarray, fleet: Fleet) -> np.ndarray:
    slots = np.unique(np.asarray(slots, np.int64))
    return slots[(slots >= 0) & (slots < fleet.size)]


def went_offline(slots: np.ndarray, fleet: Fleet, state: OfflineState, *, devices: int, window_ms: int) -> WentOffline:
    """Sort the devices a sweep found offline into own alarms and cell outages; update `state`."""
    slots = _unique_slots(slots, fleet)
    slots = slots[fleet.offline_since_ms[slots] > 0]
    state.grow(fleet.size, len(fleet.cells))
    since_all, cell_all = fleet.offline_since_ms[: fleet.size], fleet.cell[: fleet.size]
    q = slots[cell_all[slots] >= 0]
    members = np.zeros(0, np.int64)
    if q.size:
        wanted = np.zeros(len(fleet.cells) + 1, bool)  # index -1 (no cell) stays False
        wanted[cell_all[q]] = True
        cand = np.flatnonzero(wanted[cell_all] & (since_all > 0))
        line = Timeline(cell_all[cand], since_all[cand])
        lo, hi = line.between(cell_all[q], since_all[q] - window_ms, since_all[q])
        hit = (hi - lo) >= devices
        members = cand[line.order[covered(len(line), lo[hit], hi[hit])]]
        members = members[state.mode[members] != IN_OUTAGE]
    is_new = np.isin(members, slots)
    own = slots[~np.isin(slots, members)]
    cells = cell_all[members]
    order = np.lexsort((members, cells))
    members, cells, is_new = members[order], cells[order], is_new[order]

    state.mode[own] = OWN
    state.mode[members] = IN_OUTAGE
    state.cell[members] = cells
    state.members += np.bincount(cells, minlength=state.members.shape[0])[: state.members.shape[0]]
    return WentOffline(own, members, cells, members[~is_new])


@dataclass(slots=True)
class CameBack:
    own: np.ndarray  # slots whose own offline alarm (if any) clears
    ended_cells: np.ndarray  # cells whose outage ends: every device folded into it is back
    last_back: np.ndarray  # per ended cell, the slot of its outage heard last (for the time)


def came_back(slots: np.ndarray, fleet: Fleet, state: OfflineState) -> CameBack:
    """Devices heard again after being offline; update `state`."""
    slots = _unique_slots(slots, fleet)
    state.grow(fleet.size, len(fleet.cells))
    in_outage = state.mode[slots] == IN_OUTAGE
    back = slots[in_outage]
    cells = state.cell[back]
    np.subtract.at(state.members, cells, 1)
    state.mode[slots] = UNKNOWN
    state.cell[slots] = -1
    order = np.lexsort((fleet.last_seen_ms[back], cells))
    back, cells = back[order], cells[order]
    last = run_ends(cells)
    ended = state.members[cells[last]] <= 0
    return CameBack(slots[~in_outage], cells[last][ended], back[last][ended])
