"""What the device machine must be given as wheels: derived from what the GPU proof really imports.

``bench/gpu_device.sh prepare`` runs both halves of the proof here (``gpu_check.py --stand-in`` and
``gpu_pool_check.py --stand-in``: the Prefect server, ``prefect deploy``, the worker and the flow run
are all subprocesses) from ``.venv`` with a ``sitecustomize.py`` first on PYTHONPATH. It records,
in every process, each top-level module imported (an audit hook on the ``import`` event, and a
finder first on ``sys.meta_path`` for what ``importlib.import_module`` loads without raising that
event, e.g. python-slugify's ``text_unidecode``; a line appended and flushed as it comes: servers
are stopped by signals) and each distribution whose
metadata is read (``importlib.metadata``: a package may need only that). The modules map to
distributions (``packages_distributions()``) pinned at ``.venv``'s versions, the tested ones: a
fresh resolution picked other versions once (fastapi 0.165, SQLAlchemy 2.1.9: the server died at
import). Carried = what was imported and the device image lacks (``bench/device_image.txt``), plus
PIN_ANYWAY, minus NEVER.

    .venv/bin/python bench/device_carry.py sitecustomize DIR        # the tracer, into DIR
    .venv/bin/python bench/device_carry.py pins --trace DIR --out .device/carried.txt
    .venv/bin/python bench/device_carry.py slim .device/wheels          # pandas without its tests
    .venv/bin/python bench/device_carry.py image --out DIR [--venv V]  # the faithful stand-in's "image"
    .venv/bin/python bench/device_carry.py old-set --carried F --out G  # what the old preparation carried
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGE_FILE = HERE / "device_image.txt"

# Carried even though the image has them: the image's versions differ or are unknown (its package
# list names no versions) and these are what the proof's code and Prefect's CLI are sensitive to.
# pandas, pytz, tzdata: the tested pandas 2 (the image's may be another major version, with its
# own time-zone data); click, typer, rich, anyio, httpx, httpcore, h11: Prefect's command line and
# client, which the image has at versions Prefect 3.8 was not tested with.
PIN_ANYWAY = ("pandas", "pytz", "tzdata", "click", "typer", "rich", "anyio", "httpx", "httpcore", "h11")
# Never carried: the image's torch is built for its CUDA, and numpy for that torch.
NEVER = re.compile(r"^(torch|triton|numpy|nvidia-.*|cuda-.*)$")
# Imported when present, not needed: left out to keep the carried tree under the 64 MiB a device call
# carries (the faithful stand-in runs without them; so did the 2026-12-04 GPU run).
LEAVE_OUT = {
    # Prefect imports every installed collection as a plugin (server, worker, deploy); neither half
    # uses Dask (the fleet flow does, and it does not run on the device)
    "prefect-dask": "plugin", "dask": "plugin", "distributed": "plugin", "tornado": "plugin",
    "zict": "plugin", "tblib": "plugin", "locket": "plugin", "partd": "plugin",
    # uvicorn's optional C HTTP parser and file-watching reloader (h11 and no reload serve the same)
    "httptools": "optional", "watchfiles": "optional",
    # ruamel.yaml's optional C loader (the pure-Python one reads prefect.yaml the same)
    "ruamel-yaml-clib": "optional",
}
# What a carried wheel need not hold: removed from it (its RECORD rewritten) by `slim`.
SLIM = {"pandas": ("pandas/tests/",)}  # 2.5 MiB of the 11.5 MiB wheel, never imported by the library
# Not distributions: the tracer itself, the interpreter's entry module, virtualenv's hook.
NOT_MODULES = {"sitecustomize", "usercustomize", "__main__", "_virtualenv"}

SITECUSTOMIZE = '''\
"""Written by bench/device_carry.py: records what this process imports (one file per process)."""
import os as _os
import sys as _sys

_dir = _os.path.dirname(_os.path.abspath(__file__))
_out = open(_os.path.join(_dir, "imports-%d.txt" % _os.getpid()), "a", buffering=1)
_seen = set()


def _note(kind, name):
    if (kind, name) not in _seen:
        _seen.add((kind, name))
        _out.write(kind + " " + name + "\\n")  # line-buffered: written now, whatever stops the process


for _name in list(_sys.modules):
    _note("module", _name.partition(".")[0])


def _hook(event, args):
    if event == "import" and args and isinstance(args[0], str):
        _note("module", args[0].partition(".")[0])


_sys.addaudithook(_hook)


class _Recorder:  # the audit event misses importlib.import_module() of a source module: every import asks here
    @staticmethod
    def find_spec(name, path=None, target=None):
        _note("module", name.partition(".")[0])


_sys.meta_path.insert(0, _Recorder)

import importlib.metadata as _md  # noqa: E402

_from_name = _md.Distribution.from_name.__func__


def _traced_from_name(cls, name):
    dist = _from_name(cls, name)
    _note("metadata", dist.metadata["Name"] or name)
    return dist


_md.Distribution.from_name = classmethod(_traced_from_name)
'''


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: Path) -> set[str]:
    """Normalized names, one a line; ``#`` starts a comment."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalize(line.split("==")[0]))
    return names


def read_trace(folder: Path) -> tuple[set[str], set[str]]:
    """(top-level modules imported, distributions whose metadata was read) over every process's file."""
    modules, metadata = set(), set()
    for f in folder.glob("imports-*.txt"):
        for line in f.read_text().splitlines():
            kind, _, name = line.partition(" ")
            (modules if kind == "module" else metadata).add(name)
    return modules, metadata


def project_modules(repo: Path = REPO) -> set[str]:
    """The project's own top-level modules: src/ packages, the repository's packages and scripts
    (flows, tasks, deployments), the bench scripts."""
    names = {p.name for p in (repo / "src").iterdir() if (p / "__init__.py").exists()}
    names |= {p.name for p in repo.iterdir() if (p / "__init__.py").exists()}
    for folder in (repo, repo / "bench", repo / "deployments"):
        names |= {p.stem for p in folder.glob("*.py")}
    return names


def carried(modules: Iterable[str], metadata: Iterable[str], image: set[str], *,
            mapping: Mapping[str, list[str]] | None = None, version=md.version,
            project: set[str] = frozenset(), pin_anyway: Iterable[str] = PIN_ANYWAY,
            leave_out: Mapping[str, str] = LEAVE_OUT) -> tuple[dict, dict]:
    """``({normalized distribution: version}, report)``: the distributions the traced modules and
    metadata reads come from, at this interpreter's versions, less the stdlib, the project, the
    image (but for ``pin_anyway``), NEVER and ``leave_out``. ``report`` says what was left out and why."""
    mapping = md.packages_distributions() if mapping is None else mapping
    wanted: dict[str, str] = {}  # normalized -> the name as installed
    unmapped, stdlib = set(), set()
    for m in set(modules):
        if m in sys.stdlib_module_names or m in sys.builtin_module_names or m in NOT_MODULES:
            stdlib.add(m)
        elif m in project:
            continue
        elif m in mapping:
            for d in mapping[m]:
                wanted.setdefault(normalize(d), d)
        else:
            unmapped.add(m)
    for d in metadata:
        wanted.setdefault(normalize(d), d)
    wanted.pop("spywatch", None)
    anyway = {normalize(p) for p in pin_anyway}
    for p in pin_anyway:
        wanted.setdefault(normalize(p), p)
    pins, in_image, never, left_out = {}, [], [], []
    for n, d in sorted(wanted.items()):
        if NEVER.match(n):
            never.append(n)
        elif n in leave_out:
            left_out.append(n)
        elif n in image and n not in anyway:
            in_image.append(n)
        else:
            pins[n] = version(d)
    return pins, {"in_image": in_image, "never": never, "left_out": left_out, "unmapped": sorted(unmapped),
                  "stdlib_modules": len(stdlib)}


def requires_closure(root: str) -> set[str]:
    """``root`` and everything it requires, transitively, as installed here (markers evaluated for
    this interpreter, with the extras each requirement names)."""
    from packaging.requirements import Requirement

    seen, todo = set(), [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        name = normalize(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((r.name, frozenset(r.extras)))
    return {name for name, _ in seen}


def distribution_files(dist: md.Distribution) -> set[str]:
    """The top-level entries of site-packages a distribution installed (from its RECORD)."""
    tops = set()
    for f in dist.files or ():
        if f.parts and f.parts[0] not in ("..", "__pycache__"):
            tops.add(f.parts[0])
    return tops


def build_image(out: Path, image: set[str], venv: Path | None = None) -> list[str]:
    """``out``: symlinks to this interpreter's site-packages entries of the distributions in
    ``image`` that it has (their modules and .dist-info), standing in for the device image's
    site-packages; with ``venv``, a .pth in its site-packages adds ``out`` as a site dir. A top-level
    folder shared with a distribution not in the image is made a folder of links to its image
    distributions' entries only."""
    out.mkdir(parents=True)
    owners: dict[str, set[str]] = {}
    dists = {}
    for dist in md.distributions():
        n = normalize(dist.metadata["Name"])
        dists.setdefault(n, dist)
        for top in distribution_files(dist):
            owners.setdefault(top, set()).add(n)
    linked = []
    for n, dist in sorted(dists.items()):
        if n not in image:
            continue
        linked.append(n)
        for top in sorted(distribution_files(dist)):
            src = Path(dist.locate_file(top))
            if not src.exists():
                continue
            if owners[top] <= image:
                if not (out / top).exists():
                    (out / top).symlink_to(src)
                continue
            (out / top).mkdir(exist_ok=True)  # shared with a carried distribution: only the image's entries
            for f in dist.files or ():
                if f.parts[0] == top and len(f.parts) > 1 and f.parts[1] != "__pycache__":
                    link = out / top / f.parts[1]
                    if not link.exists():
                        link.symlink_to(Path(dist.locate_file(Path(top, f.parts[1]))))
    if venv is not None:
        (site,) = Path(venv).glob("lib/python*/site-packages")
        (site / "device_image.pth").write_text(f"import site; site.addsitedir({str(out.resolve())!r})\n")
    return linked


def slim(wheel: Path) -> int:
    """Remove from ``wheel`` (in place) the entries SLIM names for its distribution, and their RECORD
    lines; the bytes saved (0 when SLIM names nothing for it)."""
    import zipfile

    drop = SLIM.get(normalize(wheel.name.split("-")[0]), ())
    if not drop:
        return 0
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not line.startswith(tuple(d.encode() for d in drop)))
            dst.writestr(info, data)
    tmp.replace(wheel)
    return before - wheel.stat().st_size


def write_pins(path: Path, pins: Mapping[str, str], header: str) -> None:
    body = "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    path.write_text("".join(f"# {line}\n" for line in header.splitlines()) + body)


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            n, _, v = line.partition("==")
            pins[normalize(n)] = v
    return pins


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sitecustomize", help="write the import tracer into a folder (put it first on PYTHONPATH)")
    s.add_argument("folder", type=Path)
    p = sub.add_parser("pins", help="the carried pins from a traced run")
    p.add_argument("--trace", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    i = sub.add_parser("image", help="the faithful stand-in's image: links to this interpreter's image packages")
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--venv", type=Path, default=None, help="a bare venv to add the image to as a site dir")
    w = sub.add_parser("slim", help="remove what SLIM names from the wheels in folders (in place)")
    w.add_argument("folders", type=Path, nargs="+")
    o = sub.add_parser("old-set", help="the carried pins the old preparation had: Prefect's requirements, "
                                       "pandas, pytz, tzdata and PIN_ANYWAY (not what the flows import beyond)")
    o.add_argument("--carried", type=Path, required=True)
    o.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "sitecustomize":
        args.folder.mkdir(parents=True, exist_ok=True)
        (args.folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    elif args.cmd == "pins":
        modules, metadata = read_trace(args.trace)
        if not modules:
            raise SystemExit(f"no trace in {args.trace}")
        pins, report = carried(modules, metadata, read_names(IMAGE_FILE), project=project_modules())
        write_pins(args.out, pins, (
            f"Written by bench/device_carry.py pins from an import trace of bench/gpu_device.sh prepare\n"
            f"(gpu_check.py --stand-in and gpu_pool_check.py --stand-in under .venv, every process traced:\n"
            f"{len(list(args.trace.glob('imports-*.txt')))} processes, {len(modules)} top-level modules).\n"
            f"The distributions imported or whose metadata was read, at .venv's versions, less the device\n"
            f"image (bench/device_image.txt) but for PIN_ANYWAY, less torch/numpy/CUDA, less LEAVE_OUT.\n"
            f"Left to the image: {' '.join(report['in_image'])}\n"
            f"Left out (imported when present, not needed): {' '.join(report['left_out']) or '-'}\n"
            f"Never carried: {' '.join(report['never']) or '-'}; modules of no distribution: "
            f"{' '.join(report['unmapped']) or '-'}"))
        print(f"{len(pins)} distributions pinned into {args.out}; {len(report['in_image'])} left to the image; "
              f"unmapped modules: {report['unmapped']}")
    elif args.cmd == "image":
        linked = build_image(args.out, read_names(IMAGE_FILE), args.venv)
        print(f"image: {len(linked)} distributions linked into {args.out}")
    elif args.cmd == "slim":
        for folder in args.folders:
            for wheel in sorted(folder.glob("*.whl")):
                if saved := slim(wheel):
                    print(f"slimmed {wheel.name}: {saved / 2**20:.1f} MiB less")
    else:
        pins = read_pins(args.carried)
        keep = requires_closure("prefect") | {normalize(p) for p in PIN_ANYWAY}
        old = {n: v for n, v in pins.items() if n in keep}
        write_pins(args.out, old, "the carried pins less what the flows import beyond Prefect (the old preparation)")
        print(f"old set: {len(old)} of {len(pins)}; dropped: {' '.join(sorted(set(pins) - set(old)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
