"""``ls`` (a tree of everything under a ``fusion://`` path) and ``info`` (one object)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fusion_stac._cli._common import Context, fusion_url, human_size, table, with_context
from fusion_stac._cli._registry import UsageError, command

#: Parallel listings while walking a tree (each is one or two API requests).
WALK_WORKERS = 8


@dataclass
class Node:
    """A line of the tree: an fsspec info dict, or a virtual group of executions."""

    info: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    label: str | None = None  # for virtual nodes

    @property
    def is_dir(self) -> bool:
        return self.info.get("type") == "directory"


def execution_state(info: dict[str, Any]) -> str:
    """``succeeded`` / ``failed`` / ``running 40%`` / ``queued`` from an execution's fields."""
    success, progress = info.get("success"), info.get("progress")
    if success is True:
        return "succeeded"
    if success is False:
        return "failed"
    if not progress and not info.get("started_at"):
        return "queued"
    return f"running {progress or 0}%"


def describe(info: dict[str, Any]) -> str:
    """The details shown after a name: kind, size, type, state."""
    kind = info.get("kind")
    parts: list[str] = []
    if kind == "file":
        parts += [human_size(info.get("size")), info.get("file_type") or ""]
        if info.get("crs"):
            parts.append(str(info["crs"]))
        if info.get("analysed") is False:
            parts.append("not analysed yet")
    elif kind == "organisation":
        parts += ["organisation", info.get("id") or ""]
    elif kind == "data":
        parts += ["upload", info.get("id") or ""]
    elif kind == "output":
        parts += ["output", info.get("id") or ""]
    elif kind == "process":
        parts += ["process", info.get("process_status") or "", info.get("id") or ""]
    elif kind == "execution":
        index, count = info.get("group_index"), info.get("group_count")
        if index is not None and count is not None:
            parts.append(f"{'aggregator' if index > count else 'slice'} {index}/{count}")
        else:
            parts.append("execution")
        parts.append(execution_state(info))
        if info.get("started_at"):
            parts.append(f"started {str(info['started_at'])[:19].replace('T', ' ')}")
    elif kind == "run":  # `latest`: the whole latest run
        if info.get("group_id"):
            parts.append(f"latest run: group of {info.get('slices')} slice(s) + {info.get('aggregators')} "
                         f"aggregator(s), {info.get('group_id')}")
        else:
            parts.append("latest run: one execution")
        parts.append(execution_state(info))
    elif kind == "component":
        parts.append("component")
        success = info.get("success")
        parts.append("succeeded" if success is True else "failed" if success is False else "running")
    return "  ".join(p for p in parts if p)


def _label(info: dict[str, Any]) -> str:
    name = unquote(str(info.get("name") or "").rsplit("/", 1)[-1]) or "fusion://"
    shown = info.get("item_name")
    if shown and name == info.get("id") and shown != name:  # a name several items share: listed by id
        name = str(shown)
    return name + ("/" if info.get("type") == "directory" and info.get("kind") not in ("root",) else "")


def _shared_name(info: dict[str, Any]) -> bool:
    """The item is listed under its id because other items have the same name."""
    segment = unquote(str(info.get("name") or "").rsplit("/", 1)[-1])
    return bool(info.get("item_name")) and segment == info.get("id") and info.get("item_name") != segment


def _group_executions(children: list[Node]) -> list[Node]:
    """Executions of one group under a virtual ``group`` node, slices first, in group order."""
    groups: dict[str, list[Node]] = {}
    out: list[Node] = []
    for child in children:
        group_id = child.info.get("group_id") if child.info.get("kind") == "execution" else None
        if group_id is None:
            out.append(child)
            continue
        if group_id not in groups:
            groups[group_id] = []
            out.append(Node(info={"kind": "group", "id": group_id, "type": "group"}, label=group_id))
        groups[group_id].append(child)
    for node in out:
        if node.info.get("kind") == "group":
            members = sorted(groups[node.info["id"]], key=lambda n: n.info.get("group_index") or 0)
            slices = sum(1 for m in members if (m.info.get("group_index") or 0) <= (m.info.get("group_count") or 0))
            done = sum(1 for m in members if m.info.get("success") is not None)
            node.info["details"] = (f"group of {slices} slice{'s' if slices != 1 else ''}"
                                    f" + {len(members) - slices} aggregator{'s' if len(members) - slices != 1 else ''},"
                                    f" {done}/{len(members)} finished")
            node.children = members
    return out


def walk(ctx: Context, path: str, depth: int) -> Node:
    """The tree below ``path``, ``depth`` levels deep, each level listed concurrently."""
    fs = ctx.fs
    root = Node(info=fs.info(path))
    level = [root]
    with ThreadPoolExecutor(max_workers=WALK_WORKERS, thread_name_prefix="fusion-stac-ls") as pool:
        for _ in range(depth):
            dirs = [n for n in level if n.is_dir]
            if not dirs:
                break
            listings = list(pool.map(lambda n: fs.ls(n.info["name"], detail=True), dirs))
            level = []
            for node, listing in zip(dirs, listings, strict=True):
                node.children = [Node(info=entry) for entry in listing]
                level.extend(node.children)
                node.children = _group_executions(node.children)
    return root


def render(node: Node, *, prefix: str = "", last: bool = True, top: bool = True) -> list[str]:
    if top:
        head = fusion_url(node.info.get("name") or "")
        details = describe(node.info)
        lines = [f"{head}  {details}".rstrip()]
    else:
        branch = "└── " if last else "├── "
        name = node.label if node.label is not None else _label(node.info)
        details = str(node.info.get("details") or "") if node.info.get("kind") == "group" else describe(node.info)
        if _shared_name(node.info):
            details = f"{details}  (name shared: use the id)"
        if node.info.get("kind") == "group":
            name = f"group {name}"
        lines = [f"{prefix}{branch}{name}  {details}".rstrip()]
        prefix += "    " if last else "│   "
    for i, child in enumerate(node.children):
        lines += render(child, prefix=prefix, last=i == len(node.children) - 1, top=False)
    return lines


def _flatten(node: Node, depth: int = 0) -> list[dict[str, Any]]:
    out = []
    for child in node.children:
        if child.info.get("kind") == "group":
            out += _flatten(child, depth)
        else:
            out.append({**child.info, "depth": depth + 1, "url": fusion_url(child.info["name"])})
            out += _flatten(child, depth + 1)
    return out


def _ls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", nargs="?", default="fusion://",
                   help="a fusion:// path, names or ids at every level (default: your organisations)")
    p.add_argument("-d", "--depth", type=int, default=1,
                   help="levels to show below URL (default 1; each level costs a request per item)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON instead of a tree")


@command("ls", "list organisations, uploads, processes, executions (by group), components and files", _ls_arguments)
@with_context
def ls(ctx: Context) -> int:
    args = ctx.args
    if args.depth < 0:
        raise UsageError(f"--depth must be 0 or more, got {args.depth}")
    tree = walk(ctx, args.url, args.depth)
    if args.json:
        ctx.json(_flatten(tree) if args.depth else [tree.info])
    else:
        ctx.echo("\n".join(render(tree)))
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="a fusion:// path (names or ids)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _process_details(ctx: Context, info: dict[str, Any]) -> dict[str, Any]:
    """What a process adds to its listing entry: price, schedule, inputs and options (one request)."""
    process = ctx.client.get_process(info["organisation_id"], info["process_id"])
    runs = process.latest_executions()
    run = runs[0] if runs else None
    return {
        "price": float(process.price) if process.price is not None else None,
        "run_type": process.run_type,
        "service_id": process.service_id,
        "inputs": [i.data_id for i in process.inputs],
        "options": {o.name: o.value for o in process.options if o.name},
        "latest_run": None if run is None else {
            "group_id": run.group_id,
            "execution_id": None if run.group_id else run.process_execution_id,
            "executions": len(runs),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "status": run.job_status,
        },
    }


def _latest_run_text(run: dict[str, Any]) -> str:
    """The ``latest_run`` object as the table shows it: ``group <id> (6 executions) started <time>``."""
    what = f"group {run['group_id']} ({run['executions']} executions)" if run.get("group_id") \
        else f"execution {run.get('execution_id')}"
    return f"{what} started {run.get('started_at') or '?'}" + (f", {run['status']}" if run.get("status") else "")


@command("info", "show one object (organisation, upload, process, execution, component, output, file)",
         _info_arguments)
@with_context
def info(ctx: Context) -> int:
    args = ctx.args
    entry = ctx.fs.info(args.url)
    if entry.get("kind") == "process":
        entry.update(_process_details(ctx, entry))
    if entry.get("kind") in ("execution", "run"):
        entry["state"] = execution_state(entry)
    entry["url"] = fusion_url(entry.get("name") or "")
    if args.json:
        ctx.json(entry)
    else:
        shown = dict(entry)
        if isinstance(shown.get("latest_run"), dict):
            shown["latest_run"] = _latest_run_text(shown["latest_run"])
        if shown.get("price") is not None:
            shown["price"] = f"{shown['price']:g} credits"
        if shown.get("size") is not None and shown.get("type") == "file":
            shown["size"] = f"{shown['size']} bytes ({human_size(shown['size'])})"
        elif shown.get("type") == "directory":
            shown.pop("size", None)
        order: Sequence[str] = ("url", "kind", "item_name", "id", "state", "size", "file_type", "crs", "bounds")
        rows = {k: shown.pop(k) for k in order if k in shown}
        shown.pop("name", None)
        rows.update(sorted(shown.items()))
        ctx.echo(table(rows))
    return 0
