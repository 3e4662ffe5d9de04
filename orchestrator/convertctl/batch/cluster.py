"""The Ray executor: each model a Ray task (CPUs and memory declared), run
by remote.py on whichever node Ray gives it; its files out and its outputs
back through the object store; placed by this driver into --out/NAME, once.

Before any conversion: the cluster is reached (an address nobody answers at
is one line and exit 5, not a minute of retries), every alive node is asked
whether it has convertctl (a probe that needs nothing of convertctl to run,
so a node without it can say so), and each node makes the environments its
models start with. A node lost mid-batch takes its running tasks with it;
Ray runs them again elsewhere (max_retries), and since only a finished
task's files come back and are placed, no model is written twice. Ctrl-C:
every task is cancelled; a running one passes SIGINT on to its conversion
(as a terminal would) and sends back what it kept, placed as a failed
run's (exit 130); one that has not ended within STOP_SECONDS is killed. Models finished
before stay placed, and a model being placed when Ctrl-C comes is placed
whole first."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from convertctl.batch.outcome import ENDED, FAILED, INTERRUPTED, NOT_RUN, RUNNING
from convertctl.batch.remote import ProgressLog, pack_inputs, rewrite, run_on_node, write_tree
from convertctl.batch.sizing import UNMEASURED_MB, Sizing
from convertctl.errors import EXIT_ENVIRONMENT, EnvironmentProblem, UsageError
from convertctl.store.procs import held_interrupt

RETRIES = 3  # tries of a task whose node or worker process died (a conversion that fails is not retried)
CONNECT_SECONDS = 5
STOP_SECONDS = 30
INSTALL = "pip install 'convertctl[ray]'"


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of ray://HOST:PORT or HOST:PORT; None for auto."""
    if address in ("", "auto"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def node_probe(node_ip: str):
    """What a node says of itself. Built here and sent by value: it runs even
    where convertctl is missing, to say that it is."""

    def probe() -> dict:
        import importlib
        import sys

        try:
            module = importlib.import_module("convertctl")
        except ImportError as exc:
            return {"ok": False, "why": f"convertctl is not installed ({exc})", "python": sys.executable}
        return {"ok": True, "version": getattr(module, "__version__", "?"), "python": sys.executable}

    return probe


def prepare_node(plan_models: list) -> dict:
    """Make, on this node, the environments its models start with (a task per node)."""
    import ray

    from convertctl.batch.plan import Model
    from convertctl.batch.prepare import prepare_local
    from convertctl.config.options import Options

    runtimes, notices = prepare_local([Model(name, Options(**opts)) for name, opts in plan_models], lambda _: None)
    return {"node": ray.get_runtime_context().get_node_id(), "runtimes": runtimes, "notices": notices}


class RayPool:
    name = "ray"

    def __init__(self, choices, say):
        self.address, self.shared_dir, self.cpus = choices.address or "auto", choices.shared_dir, choices.cpus
        self.fail_fast, self.say = choices.fail_fast, say
        self.sizing = Sizing(slots=0, budget_mb=0)
        self.nodes: list = []

    @property
    def workers(self) -> int:
        return self.sizing.slots

    def connect(self) -> None:
        try:
            import ray
        except ImportError:
            raise EnvironmentProblem(f"--executor ray: Ray is not installed here: {INSTALL}") from None
        where = endpoint(self.address)
        if where is not None:
            try:
                socket.create_connection(where, timeout=CONNECT_SECONDS).close()
            except OSError as exc:
                raise EnvironmentProblem(
                    f"--address {self.address}: no Ray cluster answers there ({exc.strerror or exc})"
                ) from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EnvironmentProblem(f"--address {self.address}: could not join the Ray cluster ({exc})") from None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity

        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0, max_retries=0)(node_probe(""))
        asked = [probe.options(scheduling_strategy=Affinity(n["NodeID"], soft=False)).remote() for n in self.nodes]
        for node, ref in zip(self.nodes, asked):
            try:
                said = ray.get(ref, timeout=120)
            except Exception as exc:  # noqa: BLE001 - whatever stops the probe, the node cannot convert
                said = {"ok": False, "why": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            if not said.get("ok"):
                raise EnvironmentProblem(
                    f"Ray node {node.get('NodeManagerAddress')} ({node['NodeID'][:8]}): {said.get('why')}; "
                    f"every node needs convertctl: {INSTALL}"
                )
        cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in self.nodes)
        memory = max((n.get("Resources", {}).get("memory", 0) for n in self.nodes), default=0) / 2**20
        self.sizing = Sizing(slots=max(int(cpus // max(self.cpus, 0.01)), 1), budget_mb=memory)
        self.say(f"Ray: {len(self.nodes)} node(s), {cpus:g} CPU(s), joined at {self.address}")

    def prepare(self, models: list) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity

        plan_models = [(m.name, asdict(m.options)) for m in models]
        task = ray.remote(num_cpus=0, max_retries=0)(prepare_node)
        refs = [
            task.options(scheduling_strategy=Affinity(n["NodeID"], soft=False)).remote(plan_models) for n in self.nodes
        ]
        for node, ref in zip(self.nodes, refs):
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001
                cause = getattr(exc, "cause", None) or exc
                message = getattr(cause, "message", "") or str(cause).strip().splitlines()[-1]
                raise EnvironmentProblem(f"Ray node {node['NodeID'][:8]}: its environments: {message}") from None

    def run(self, models: list, outcomes: list, display) -> bool:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity

        display.note(f"preparing the environments on {len(self.nodes)} Ray node(s)")
        self.prepare(models)
        # On the head: the node whose loss ends the cluster anyway (the driver's own
        # node cannot be told apart when several nodes share one address).
        head = next((n["NodeID"] for n in self.nodes if "node:__internal_head__" in n.get("Resources", {})), None)
        actor: Any = ray.remote(num_cpus=0)(ProgressLog)
        progress = actor.options(scheduling_strategy=Affinity(head, soft=True)).remote() if head else actor.remote()
        task = ray.remote(num_cpus=self.cpus, max_retries=RETRIES, retry_exceptions=False)(run_on_node)
        queue, stopping = list(zip(models, outcomes)), set()
        refs: dict = {}
        by_name = {o.name: o for o in outcomes}
        try:
            while queue or refs:
                for model, outcome in [] if self._stop(outcomes) else list(queue):
                    flying = [o for _, o in refs.values()]
                    if model.family in self.sizing.peaks or not any(o.family == model.family for o in flying):
                        queue.remove((model, outcome))
                        inputs, where = pack_inputs(asdict(model.options), self.shared_dir)
                        memory = min(self.sizing.estimate(model.family), self.sizing.budget_mb or UNMEASURED_MB)
                        ref = task.options(memory=int(memory * 2**20)).remote(
                            model.name, asdict(model.options), ray.put(inputs), where, progress
                        )
                        refs[ref] = (model, outcome)
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5) if refs else ([], [])
                try:
                    self._events(ray.get(progress.drain.remote(), timeout=30), by_name)
                except Exception:  # noqa: BLE001 - progress lost with its node: the results still come
                    pass
                with held_interrupt() as held:  # a model's files are placed whole, Ctrl-C or not
                    for ref in ready:
                        model, outcome = refs.pop(ref)
                        self._finish(ray, ref, model, outcome, ref in stopping)
                if held:
                    raise KeyboardInterrupt
                if self._stop(outcomes):
                    for _, outcome in queue:
                        outcome.state = NOT_RUN
                    queue = []
                    for ref, (_, outcome) in refs.items():
                        if outcome.state != RUNNING and ref not in stopping:
                            ray.cancel(ref)
                            stopping.add(ref)
                display.update()
        except KeyboardInterrupt:
            self._interrupt(ray, refs, queue, progress, by_name)
            display.update()
            return True
        return False

    def _stop(self, outcomes: list) -> bool:
        """--fail-fast, and a model has failed: start nothing more."""
        return self.fail_fast and any(o.state in (FAILED, INTERRUPTED) for o in outcomes)

    def _events(self, events: list, by_name: dict) -> None:
        for name, node, line, _ in events:
            outcome = by_name.get(name)
            if outcome is None or outcome.state in ENDED:  # a late word from a try that ended
                continue
            if line == "started":
                if outcome.attempts:
                    outcome.attempts[-1]["ended"] = "lost (node or worker died); tried again"
                if not outcome.started:
                    outcome.start()
                outcome.state = RUNNING
                outcome.attempts.append({"node": node})
            else:
                outcome.last_line = line

    def _finish(self, ray, ref, model, outcome, stopped: bool) -> None:
        from ray.exceptions import RayTaskError, TaskCancelledError

        if not outcome.started:
            outcome.start()
        try:
            returned = ray.get(ref)
        except TaskCancelledError:  # cancelled before it began
            outcome.state = NOT_RUN
            outcome.failure = "not run: stopped by --fail-fast" if stopped else "not run: the batch was interrupted"
            return
        except RayTaskError as exc:  # a bug in the task, not in a conversion: internal
            cause = getattr(exc, "cause", None) or exc
            outcome.end({"exit_code": 1, "failure": f"the Ray task failed: {type(cause).__name__}: {cause}"}, None)
            return
        except Exception as exc:  # noqa: BLE001 - a node or worker lost more often than Ray retries
            failure = f"lost after {RETRIES + 1} tries: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            outcome.end({"exit_code": EXIT_ENVIRONMENT, "failure": failure}, None)
            return
        result = place_returned(model, returned)
        outcome.node = returned["node"]
        # The tries as the progress actor heard of them; the one that made it is known for sure
        # (its "started" may be lost with a node, or still on its way).
        if not outcome.attempts or outcome.attempts[-1]["node"] != outcome.node:
            for attempt in outcome.attempts:
                attempt.setdefault("ended", "lost (node or worker died); tried again")
            outcome.attempts.append({"node": outcome.node})
        outcome.attempts[-1]["ended"] = "made it"
        outcome.end(result, returned.get("peak_rss_mb"))
        if outcome.state == INTERRUPTED:
            outcome.attempts[-1]["ended"] = "stopped by Ctrl-C"
        outcome.log = result.get("log", "")
        self.sizing.learn(model.family, outcome.peak_rss_mb, outcome.cached)
        if stopped and outcome.exit_code == 130:
            outcome.state, outcome.failure = NOT_RUN, "not run: stopped by --fail-fast"

    def _interrupt(self, ray, refs: dict, queue: list, progress, by_name: dict) -> None:
        """Ctrl-C: every task cancelled; what each sends back placed (a
        finished model's files, a stopped one's run directory); those that
        have not ended within STOP_SECONDS killed."""
        for ref in refs:
            ray.cancel(ref)  # a KeyboardInterrupt in a running task: it stops its conversion with SIGINT
        try:
            self._events(ray.get(progress.drain.remote(), timeout=10), by_name)  # who had started
        except Exception:  # noqa: BLE001 - the actor lost with its node: the results still come
            pass
        deadline = time.monotonic() + STOP_SECONDS
        pending = dict(refs)
        while pending and time.monotonic() < deadline:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(deadline - time.monotonic(), 0.1))
            for ref in ready:
                model, outcome = pending.pop(ref)
                with held_interrupt():  # a second Ctrl-C waits for this model's files to be placed
                    self._finish(ray, ref, model, outcome, False)
        for ref, (_, outcome) in pending.items():
            ray.cancel(ref, force=True)
            if outcome.state == RUNNING:
                outcome.state, outcome.exit_code = INTERRUPTED, 130
                outcome.failure = f"killed: it did not stop within {STOP_SECONDS} s of Ctrl-C"
            else:
                outcome.state = NOT_RUN
        for _, outcome in queue:
            outcome.state = NOT_RUN

    def close(self) -> None:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


def place_returned(model, returned: dict) -> dict:
    """A node's outputs into --out/NAME as `convertctl run` places its own
    (a passed run's set promoted as one, stale files moved aside; a failed
    run's kept directory under .convertctl/runs), paths in the report made
    the driver's. The worker's result, its paths made the driver's."""
    from convertctl.batch.placing import place_files

    out = Path(model.options.out).resolve()
    mapping = {returned["out"]: str(out)}
    options = asdict(model.options)
    for field in ("model", "calib", "eval_data", "sample_inputs", "code"):
        if options.get(field):
            mapping[f"{returned['in']}/{field}/{Path(options[field]).name}"] = str(Path(options[field]).resolve())
            mapping.setdefault(f"{returned['in']}/{field}", str(Path(options[field]).resolve()))
    result = rewrite(returned["result"], mapping)
    place_files(model.options, out, returned["files"], mapping, result.get("status") == "passed")
    log = out / ".convertctl" / "ray-worker.log"
    write_tree(out, {".convertctl/ray-worker.log": returned.get("log", "").encode()})
    result.setdefault("log", str(log))
    return result
