"""Result trees of concurrent traversal (executions → components → data → files) and the walks that
build them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fusion_stac.client._common import _id_of
from fusion_stac.client._processes import _Processes
from fusion_stac.client._session import Fanout
from fusion_stac.client._transfers import _Transfers
from fusion_stac.models import Data, DataFile, Process, ProcessExecution, ProcessServiceExecution, SignedURL


@dataclass(frozen=True)
class OutputNode:
    """An output (or input) Data item of a component, its files and, if asked, their signed URLs."""

    data: Data
    files: tuple[DataFile, ...]
    urls: Mapping[str, SignedURL] = field(default_factory=dict, repr=False)  # file_id -> URL


@dataclass(frozen=True)
class ComponentNode:
    """A component (process service execution) and its output data."""

    component: ProcessServiceExecution
    outputs: tuple[OutputNode, ...]


@dataclass(frozen=True)
class ExecutionNode:
    """An execution, its components, and whether it is a group aggregator."""

    execution: ProcessExecution
    components: tuple[ComponentNode, ...]
    is_aggregator: bool

    def iter_files(self) -> Iterator[tuple[ProcessServiceExecution, Data, DataFile]]:
        for comp in self.components:
            for out in comp.outputs:
                for f in out.files:
                    yield comp.component, out.data, f


@dataclass(frozen=True)
class GroupTree:
    """All executions of one group (slices and aggregators), fetched concurrently."""

    organisation_id: str
    process_id: str
    group_id: str | None
    slices: tuple[ExecutionNode, ...]
    aggregators: tuple[ExecutionNode, ...]

    @property
    def executions(self) -> tuple[ExecutionNode, ...]:
        return self.slices + self.aggregators

    def iter_files(self) -> Iterator[tuple[ExecutionNode, ProcessServiceExecution, Data, DataFile]]:
        for node in self.executions:
            for comp, data, f in node.iter_files():
                yield node, comp, data, f


class _Tree(_Transfers, _Processes):
    """``walk_execution`` and ``group_tree``: pipelined walks on one bounded pool."""

    # -- concurrent traversal ------------------------------------------------------------------------
    def walk_execution(self, org_id: str, execution: ProcessExecution | str, *, urls: bool = False,
                       inputs: bool = False, process: Process | None = None) -> ExecutionNode:
        """One execution with its components, their output Data and files (and signed URLs)."""
        if isinstance(execution, str):
            execution = self.get_execution(org_id, execution)
        tree = self._walk(org_id, [execution], urls=urls, inputs=inputs, process=process)
        return tree[0]

    def group_tree(self, org_id: str, process: Process | str, group_id: str | None = None, *,
                   urls: bool = False, inputs: bool = False) -> GroupTree:
        """Every execution of a group, their components, output Data and files, fetched concurrently.

        ``group_id`` defaults to the group of the most recent execution (one more request). With
        ``urls`` each file also gets a signed download URL; with ``inputs`` components' inputs are
        walked too. Pass the :class:`Process` model (not just its id) to let components tell
        aggregators from slices when group indices do not.
        """
        pid = _id_of(process)
        model = process if isinstance(process, Process) else None
        if group_id is None:
            latest = self.latest_execution(org_id, pid)
            group_id = latest.group_id
            members = [latest] if group_id is None else None
        else:
            members = None
        if members is None:
            members = list(self.iter_executions(org_id, pid, group_id=group_id, reverse=False))
        nodes = self._walk(org_id, members, urls=urls, inputs=inputs, process=model)
        slices = tuple(sorted((n for n in nodes if not n.is_aggregator), key=_node_order))
        aggregators = tuple(sorted((n for n in nodes if n.is_aggregator), key=_node_order))
        return GroupTree(organisation_id=org_id, process_id=pid, group_id=group_id, slices=slices,
                         aggregators=aggregators)

    def _walk(self, org_id: str, executions: Sequence[ProcessExecution], *, urls: bool, inputs: bool,
              process: Process | None) -> list[ExecutionNode]:
        components: dict[str, list[ProcessServiceExecution]] = {}
        datas: dict[str, Data] = {}
        files: dict[str, list[DataFile]] = {}
        signed: dict[tuple[str, str], SignedURL] = {}
        claimed: set[str] = set()  # data ids already being fetched (outputs can be shared)
        lock = threading.Lock()
        workers = self.max_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-stac-walk") as pool:
            fan = Fanout(pool)

            def get_file_url(data_id: str, file_id: str) -> None:
                url = self.download_url(org_id, data_id, file_id)
                with lock:
                    signed[(data_id, file_id)] = url

            def get_files(data_id: str) -> None:
                found = self.list_files(org_id, data_id)
                with lock:
                    files[data_id] = found
                if urls:
                    for f in found:
                        if f.file_id:
                            fan.submit(get_file_url, data_id, f.file_id)

            def get_data(data_id: str) -> None:
                found = self.get_data(org_id, data_id)
                with lock:
                    datas[data_id] = found

            def get_components(execution: ProcessExecution) -> None:
                found = list(self.iter_components(org_id, execution.id))
                with lock:
                    components[execution.id] = found
                for comp in found:
                    for data_id in (*comp.outputs, *(comp.inputs if inputs else ())):
                        with lock:
                            if data_id in claimed:
                                continue
                            claimed.add(data_id)
                        fan.submit(get_data, data_id)
                        fan.submit(get_files, data_id)

            for execution in executions:
                fan.submit(get_components, execution)
            fan.wait()

        def node_for(data_id: str) -> OutputNode:
            fs = tuple(files.get(data_id, ()))
            return OutputNode(
                data=datas[data_id], files=fs,
                urls={f.file_id: signed[(data_id, f.file_id)] for f in fs
                      if f.file_id is not None and (data_id, f.file_id) in signed},
            )

        chain_services = process.chain_service_ids if process is not None else frozenset()
        nodes = []
        for execution in executions:
            comps = components.get(execution.id, [])
            comp_nodes = tuple(
                ComponentNode(component=c, outputs=tuple(node_for(d) for d in c.outputs)) for c in comps
            )
            aggregator = execution.is_aggregator or (
                bool(chain_services) and bool(comps) and all(c.service_id not in chain_services for c in comps)
            )
            nodes.append(ExecutionNode(execution=execution, components=comp_nodes, is_aggregator=aggregator))
        return nodes


def _node_order(node: ExecutionNode) -> tuple[int, str]:
    return (node.execution.group_index or 0, node.execution.id or "")
