"""Which process this is when a launcher started several (`torchrun`, `accelerate launch`): the one module that
knows about ranks. The stages never ask; the workflow hands them what they need (which shards to compute, which
device to use) and decides who trains.

A launcher says so in the environment (WORLD_SIZE, or an MPI launcher's own variables). Then Accelerate's
`PartialState` joins the process group, and only then is accelerate imported: a single-process run never pays
for it.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import HeadtuneError
from .features import resolve_device

log = logging.getLogger(__name__)

# The variables that carry the number of processes, as accelerate reads them (torchrun and `accelerate launch`
# set WORLD_SIZE; mpirun sets one of the others).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")  # in the same order

# How long a process waits at the barrier for the others. The default (10 or 30 minutes) is far too short: the
# process whose share of the cache is already there (a resumed run, a small last split) waits there for the
# others' whole backbone pass, hours on a large data set. A process that fails makes its launcher stop the
# others, so a long wait is never a hang.
BARRIER_TIMEOUT = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Processes:
    """This process among those of one run: a single process unless a launcher started several."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # its index among the processes on its machine
    local_world_size: int = 1  # processes on its machine
    _state: Any = field(default=None, repr=False, compare=False)  # accelerate's PartialState, with several

    @property
    def main(self) -> bool:
        """The process that trains the head and writes the artifacts (there is one in every run)."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1

    def owns(self, shard: int) -> bool:
        """Whether this process computes cache shard `shard` of a split. Fixed by the shard's index alone, so
        the processes never need to agree on anything at run time: no shard is computed twice, none is left
        out, and a resumed run's processes each compute their own missing ones."""
        return shard % self.world_size == self.rank

    def barrier(self) -> None:
        """Wait until every process got here."""
        if self._state is not None:
            with self._others_stopped():
                self._state.wait_for_everyone()

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (picklable, small), in rank order, on every process."""
        if self._state is None:
            return [value]
        values = [None] * self.world_size
        with self._others_stopped():
            torch.distributed.all_gather_object(values, value)
        return values

    @contextlib.contextmanager
    def _others_stopped(self):
        # a process that stops (bad input, Ctrl-C) closes its connections, and the others' wait fails with a
        # transport error; the stopped one's own line says why, and this one's says only that
        try:
            yield
        except RuntimeError as err:  # torch.distributed.DistBackendError and the transports' errors
            raise HeadtuneError(f"process {self.rank} of {self.world_size}: another process of this run stopped "
                                f"(its own message says why)") from err

    def device(self, requested: str) -> torch.device:
        """The device for --device `requested`: as asked with one process; with several, each process on a
        machine takes the GPU of its local rank (`cuda:<local rank>`; with more processes than GPUs, they share
        them in turn, as accelerate does, with a warning)."""
        device = resolve_device(requested)
        if not self.several or device.type != "cuda":
            return device
        if device.index is not None:
            raise HeadtuneError(f"--device {requested} names one GPU, but {self.world_size} processes run: pass "
                                f"--device cuda (or auto), and each process takes the GPU of its local rank")
        count = torch.cuda.device_count()
        if self.local_world_size > count and self.local_rank == 0:  # said once per machine
            log.warning("%d processes on this machine share its %d GPU(s): start at most %d per machine (e.g. "
                        "torchrun --nproc_per_node %d) to give each its own", self.local_world_size, count, count,
                        count)
        return torch.device("cuda", self.local_rank % count)


def launched_processes() -> int:
    """How many processes the launcher says this run has (1 when no launcher set any)."""
    return _launcher_number(WORLD_SIZE_VARIABLES, "a number of processes", 1)


def launched_rank() -> int:
    """This process's rank as the launcher set it, read before (or without) joining any process group: 0 when no
    launcher set one."""
    return _launcher_number(RANK_VARIABLES, "a process rank", 0)


def _launcher_number(names: tuple[str, ...], what: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise HeadtuneError(f"the environment variable {name}={value!r} is not {what}; it is set by "
                                    f"launchers such as torchrun") from None
    return default


def stopped_by_launcher() -> str | None:
    """Why SIGTERM reached this process, if a launcher started it among several: a launcher stops every process
    of a run as soon as one fails (that one's own line says why, e.g. bad input, which every process meets) or when
    the run itself is stopped, and this process cannot tell which. None for a process started on its own."""
    try:
        total, rank = launched_processes(), launched_rank()
    except HeadtuneError:
        return None
    if total <= 1:
        return None
    return (f"process {rank} of {total} was stopped by its launcher, which stops them all when one fails (see "
            f"that one's error line) or when the run is interrupted")


def runs_alone(command: str) -> bool:
    """Whether this process runs `command`, one that works in a single process (predict, evaluate): any process
    started on its own; of several a launcher started, the first alone, which says so once. The others would
    repeat its work and print or write the same output again."""
    total, rank = launched_processes(), launched_rank()
    if total > 1 and rank == 0:
        log.warning("%s runs in one process: this one does it all, and the launcher's other %d do nothing (start it "
                    "without torchrun / accelerate launch)", command, total - 1)
    return rank == 0


def current() -> Processes:
    """This process: a single one unless a launcher started several; then this joins their process group (every
    process must call it, once the launcher has started them all). The group stays joined for the life of the
    process (accelerate's state is one per process), so a second run in the same process joins nothing anew."""
    if launched_processes() <= 1:
        return Processes()
    from accelerate import PartialState
    from accelerate.utils import get_cpu_distributed_information

    # gloo, on GPUs too: the processes exchange only a barrier and a few small Python objects, which needs no GPU
    # memory for NCCL's communicators and runs the same code on every machine, so what the CPU tests cover is
    # what runs on GPUs.
    state = PartialState(cpu=True, timeout=BARRIER_TIMEOUT)
    return Processes(state.process_index, state.num_processes, state.local_process_index,
                     get_cpu_distributed_information().local_world_size, state)
