"""Folder upscaling on a Ray cluster: ``superres upscale IN -o OUT --executor ray``.

A bounded pool of actors, each loading the model once, takes one file at a time (so memory
stays at one image per worker) and writes it as the local path does, with
:func:`~superres.engine.batch.upscale_file`: the same atomic writes and bytes. The driver
plans the jobs and skips existing outputs, so a stopped batch resumes. A worker that dies
mid-file leaves no partial output (writes are atomic, and the driver deletes the temporary it
was writing); its file goes to a fresh worker, up to :data:`RETRIES` more times, then is
reported as failed while the rest go on.
Inputs and outputs must be on storage that every node mounts at the same path.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import ModuleType, TracebackType
from typing import Any

from superres.atomic import remove_leftovers
from superres.engine.batch import FileSummary, Job, upscale_file
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.extras import require

RETRIES = 2  # further attempts for a file whose worker died
CONNECT_TIMEOUT = 5.0  # seconds for a Ray address to accept a connection
KILL_TIMEOUT = 10.0  # seconds to wait for killed workers to be gone, then their temporaries
Result = FileSummary | Exception


@dataclass(frozen=True)
class WorkerSettings:
    """The command's options: what every worker builds its :class:`Upscaler` from, and what it
    passes :func:`~superres.engine.batch.upscale_file` for each file."""

    model: str
    scale: int
    upscaler: dict[str, Any]  # Upscaler keyword arguments: tile, device, precision, ...
    per_file: dict[str, Any] = field(default_factory=dict)  # outscale, quality, ...

    @property
    def cpus(self) -> int:
        """CPUs a worker reserves: its threads (Ray sets OMP_NUM_THREADS to match)."""
        return int(self.upscaler.get("threads") or 1)

    @property
    def gpus(self) -> int:
        return 1 if str(self.upscaler.get("device", "cpu")).startswith("cuda") else 0


class FileWorker:
    """One Ray actor: the model loaded once, then one file per call. Never raises: a failure
    to start or to upscale a file is returned, so the driver can report it in one line."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.upscaler: Upscaler | Exception
        try:
            self.upscaler = Upscaler(settings.model, settings.scale, **settings.upscaler)
        except Exception as error:  # reported by the driver, once, as the pool's failure
            self.upscaler = error

    def ready(self) -> tuple[str, str] | Exception:
        """The model this worker loaded (``compact x2``: a name such as ``auto`` resolved) and
        how it runs it (``pytorch fp32, tile 256``), or why it could not load it."""
        if isinstance(self.upscaler, Exception):
            return self.upscaler
        model = f"{self.upscaler.model.name} x{self.upscaler.scale}"
        return model, self.upscaler.describe()

    def run(self, job: Job) -> Result:
        if isinstance(self.upscaler, Exception):
            return self.upscaler
        try:
            return upscale_file(self.upscaler, job, **self.settings.per_file)
        except Exception as error:  # one file's failure: the batch goes on
            return error


def _check_answers(address: str) -> None:
    """A ``host:port`` address that does not accept a connection fails now, in one line
    (``ray.init`` would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise SuperresError(f"the Ray cluster at {address} does not answer ({error})") from None


def _connect(ray: ModuleType, address: str | None) -> bool:
    """Join the cluster at ``address`` (None: start a local one); True if this call did."""
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _check_answers(address)
    try:
        ray.init(
            address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at {address}" if address else "(local)"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SuperresError(f"cannot join the Ray cluster {where}: {first}") from None
    return True


class RayPool:
    """A pool of :class:`FileWorker` actors on a Ray cluster, used as a context manager."""

    def __init__(
        self,
        settings: WorkerSettings,
        address: str | None = None,
        worker: type[FileWorker] = FileWorker,
    ) -> None:
        self.ray = require("ray", "distributed", "--executor ray")
        self.settings = settings
        self.address = address
        self.worker = worker
        self.started = False
        self.actors: list[Any] = []
        self.running: dict[Any, tuple[Any, Job]] = {}  # a call's result -> its worker and job

    def __enter__(self) -> RayPool:
        self.started = _connect(self.ray, self.address)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.running:  # stopped mid-batch (Ctrl-C): once the workers are gone, their files'
            # temporaries go too, so that nothing but finished outputs is left
            self.ray.wait(list(self.running), num_returns=len(self.running), timeout=KILL_TIMEOUT)
            for _, job in self.running.values():
                remove_leftovers(job.target.absolute())
        if self.started:
            self.ray.shutdown()

    def _slots(self) -> int:
        """Workers the cluster can hold at once: its GPUs, or its CPUs over a worker's. A GPU
        asked for on a cluster without one is refused now: its workers would wait forever."""
        resources = self.ray.cluster_resources()
        if self.settings.gpus:
            gpus = int(resources.get("GPU", 0))
            if not gpus:
                device = self.settings.upscaler["device"]
                cpus = int(resources.get("CPU", 0))
                raise SuperresError(
                    f"--device {device} was asked for, but the Ray cluster has no GPU ({cpus} CPUs)"
                )
            return gpus
        return max(1, int(resources.get("CPU", 1) // self.settings.cpus))

    def _new_actor(self) -> Any:
        env = {k: v for k, v in os.environ.items() if k == "SUPERRES_WEIGHTS_DIR"}
        remote = self.ray.remote(self.worker).options(
            num_cpus=self.settings.cpus,
            num_gpus=self.settings.gpus,
            runtime_env={"env_vars": env} if env else None,
        )
        return remote.remote(self.settings)

    def start(self, files: int) -> str:
        """Start up to ``files`` workers (bounded by the cluster); one line on how they run."""
        self.actors = [self._new_actor() for _ in range(max(1, min(files, self._slots())))]
        answers = self.ray.get([actor.ready.remote() for actor in self.actors])
        for answer in answers:
            if isinstance(answer, Exception):
                raise SuperresError(f"a Ray worker could not load the model: {answer}")
        # Several of either: the nodes resolved auto differently.
        models = " / ".join(sorted({model for model, _ in answers}))
        runs = " / ".join(sorted({run for _, run in answers}))
        return f"{models} on {len(self.actors)} Ray worker(s): {runs}"

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Result]]:
        """Each job's summary or error, in the order they finish."""
        exceptions = self.ray.exceptions
        pending = deque(jobs)
        attempts = dict.fromkeys(jobs, 0)
        running = self.running

        def submit(actor: Any) -> None:
            job = pending.popleft()
            absolute = replace(job, source=job.source.absolute(), target=job.target.absolute())
            running[actor.run.remote(absolute)] = (actor, job)

        for actor in self.actors[: len(pending)]:
            submit(actor)
        while running:
            [ref], _ = self.ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ref)
            try:
                result: Result = self.ray.get(ref)
            except exceptions.RayActorError:
                remove_leftovers(job.target.absolute())  # what it was writing, if anything
                attempts[job] += 1
                self.actors.remove(actor)
                actor = self._new_actor()
                self.actors.append(actor)
                if attempts[job] <= RETRIES:
                    pending.appendleft(job)
                else:
                    yield (
                        job,
                        SuperresError(
                            f"{job.source}: not written: its Ray worker died {attempts[job]} times"
                        ),
                    )
            except exceptions.RayError as error:  # e.g. a result Ray could not send back
                yield job, error
            else:
                yield job, result
            if pending:
                submit(actor)
