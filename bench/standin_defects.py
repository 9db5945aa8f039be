"""The faithful stand-in (``bash bench/gpu_device.sh stand-in``) against the three defects the first
GPU run found (bench/results/gpu_2026-12-04/README.md): each one reintroduced, the stand-in must
FAIL with its error; unmodified, it must pass.

1. ``gpu_pool_check.py`` starts the server with PREFECT_HOME ``<tmp>/prefect``, the path of its
   ``prefect`` wrapper script (in a scratch copy of the tree): ``FileExistsError``.
2. The wheels of a fresh resolution of ``prefect==<.venv's version>`` (``pip download`` with its
   dependencies, for this interpreter) in place of the pins, the old preparation's way (the pins
   of what Prefect does not require kept, so that only this defect is in): the server dies at import.
3. The carried pins less what the flows import beyond Prefect's requirements (exchange_calendars
   and its calendars' packages), as the old preparation had it: ``ModuleNotFoundError``.

    .venv/bin/python bench/standin_defects.py     # after bash bench/gpu_device.sh prepare; ~5 min on 2 cores
    -> bench/results/gpu_standin.md / .json

The defect cases run the ``pool`` half only (``stand-in pool``): none of the three is in ``check``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE)]

import device_carry as dc  # noqa: E402
from machine import machine  # noqa: E402

OUT = HERE / "out" / "defects"
WHEELS = HERE / "out" / "standin-wheels"
CASES = {
    "unmodified": (None, "the stand-in passes (check and pool)"),
    "1 home is the wrapper": (r"FileExistsError.*", "PREFECT_HOME <tmp>/prefect beside the wrapper <tmp>/prefect"),
    "2 fresh resolution": (r"(TypeError|ImportError|AttributeError|ModuleNotFoundError).*|prefect server exited.*",
                           "a fresh resolution of Prefect's dependencies instead of the pins"),
    "3 flow imports missing": (r"ModuleNotFoundError: No module named 'exchange_calendars'",
                               "no wheels for what the flows import beyond Prefect"),
}


def wheel_name(path: Path) -> str:
    return dc.normalize(path.name.split("-")[0])


def scratch_tree(dest: Path) -> Path:
    """The working tree's tracked files, copied, with .device and .venv linked."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for link in (".device", ".venv"):
        (dest / link).symlink_to(REPO / link)
    return dest


def fresh_resolution(dest: Path) -> dict:
    """Defect 2's wheels: ``pip download prefect==V`` with its dependencies, less what the old
    preparation left to the image, plus the pinned wheels of what that resolution does not hold."""
    import importlib.metadata as md

    shutil.rmtree(dest, ignore_errors=True)
    fresh = dest.parent / "fresh-download"
    shutil.rmtree(fresh, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(fresh),
                    f"prefect=={md.version('prefect')}"], check=True, capture_output=True)
    dest.mkdir(parents=True)
    image = dc.read_names(dc.IMAGE_FILE) - {dc.normalize(p) for p in dc.PIN_ANYWAY}
    picked = {}
    for w in fresh.glob("*.whl"):
        if wheel_name(w) not in image and not dc.NEVER.match(wheel_name(w)):
            shutil.copy2(w, dest)
            picked[wheel_name(w)] = w.name.split("-")[1]
    for w in WHEELS.glob("*.whl"):
        if wheel_name(w) not in picked:
            shutil.copy2(w, dest)
    pins = dc.read_pins(REPO / ".device" / "carried.txt")
    return {"differs_from_pins": {n: {"fresh": v, "pinned": pins[n]} for n, v in sorted(picked.items())
                                  if n in pins and pins[n] != v},
            "fresh_not_pinned": sorted(set(picked) - set(pins))}


def old_set(dest: Path) -> dict:
    """Defect 3's wheels: the pinned ones less what the flows import beyond Prefect's requirements."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    keep = dc.requires_closure("prefect") | {dc.normalize(p) for p in dc.PIN_ANYWAY}
    dropped = []
    for w in WHEELS.glob("*.whl"):
        if wheel_name(w) in keep:
            shutil.copy2(w, dest)
        else:
            dropped.append(wheel_name(w))
    return {"dropped": sorted(dropped)}


def stand_in(tree: Path, wheels: Path, out: Path, half: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = ["bash", "bench/gpu_device.sh", "stand-in", half]
    env = {**os.environ, "STANDIN_WHEELS": str(wheels), "OUT": str(out)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    console = done.stdout + done.stderr
    (out / "console.txt").write_text(console)
    result = json.loads((out / "gpu_pool.json").read_text()) if (out / "gpu_pool.json").exists() else {}
    text = "\n".join([console, *(str(result.get(k) or "") for k in ("error", "server_log_tail", "worker_log_tail"))])
    return {"command": f"STANDIN_WHEELS={wheels.relative_to(REPO)} bash bench/gpu_device.sh stand-in {half}"
                       + (f" (in {tree.relative_to(REPO)})" if tree != REPO else ""),
            "rc": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "flow_run_state": result.get("state"), "trained_on": (result.get("outcome") or {}).get("device"),
            "text": text}


def main() -> int:
    if not WHEELS.exists():
        raise SystemExit("no bench/out/standin-wheels: run bash bench/gpu_device.sh prepare first")
    cases = []
    for name, (pattern, what) in CASES.items():
        tree, wheels, half, extra = REPO, WHEELS, "pool", {}
        if name == "unmodified":
            half = "all"
        elif name.startswith("1"):
            tree = scratch_tree(OUT / "tree")
            script = tree / "bench" / "gpu_pool_check.py"
            src = script.read_text()
            assert 'LocalServer.start(tmp / "prefect-home")' in src
            script.write_text(src.replace('LocalServer.start(tmp / "prefect-home")', 'LocalServer.start(tmp / "prefect")'))
        elif name.startswith("2"):
            wheels, extra = OUT / "wheels-fresh", fresh_resolution(OUT / "wheels-fresh")
        else:
            wheels, extra = OUT / "wheels-old", old_set(OUT / "wheels-old")
        print(f"{name}: {what} ...", flush=True)
        r = stand_in(tree, wheels, OUT / name.replace(" ", "-"), half)
        text = r.pop("text")
        if pattern is None:
            ok = r["rc"] == 0 and r["flow_run_state"] == "Completed" and r["trained_on"] == "cpu"
            line = "OK: the run completed (stand-in)" if ok else "did not pass"
        else:
            m = re.search(pattern, text)
            ok = r["rc"] != 0 and m is not None
            line = m.group(0)[:300] if m else None
            if m and name.startswith("2"):  # the server's own error, under "prefect server exited"
                m2 = re.search(r"(TypeError|ImportError|AttributeError|ModuleNotFoundError)[^\n]*", text)
                line = m2.group(0)[:300] if m2 else line
        cases.append({"case": name, "what": what, "expected": "pass" if pattern is None else "fail", **r,
                      "as_expected": ok, "error_line": line, **extra})
        print(f"  rc {r['rc']}, {r['seconds']} s: {'as expected' if ok else 'NOT as expected'}: {line}", flush=True)
    shutil.rmtree(OUT / "tree", ignore_errors=True)
    all_ok = all(c["as_expected"] for c in cases)
    m = machine()
    result = {"command": "python bench/standin_defects.py", "machine": m, "cases": cases, "ok": all_ok}
    (HERE / "results" / "gpu_standin.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The faithful stand-in against the three defects of the first GPU run (bench/standin_defects.py)", "",
             f"- ran: `{result['command']}` after `bash bench/gpu_device.sh prepare`, {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, Python {m['python']}, torch {m.get('torch')}, no GPU",
             "- the stand-in: a bare venv of .venv's base interpreter, the image's packages linked from .venv, the "
             "carried pins (.device/carried.txt, built for this interpreter) installed with `pip --target` into an "
             "empty folder; each defect case runs its `pool` half", "",
             "| case | expected | outcome | rc | s | error line |", "|---|---|---|---|---|---|"]
    for c in cases:
        outcome = "passed" if c["rc"] == 0 else "FAILED"
        lines.append(f"| {c['case']}: {c['what']} | {c['expected']} | {outcome}"
                     f"{'' if c['as_expected'] else ' (NOT as expected)'} | {c['rc']} | {c['seconds']} | "
                     f"`{(c['error_line'] or '').replace('|', '/')}` |")
    for c in cases:
        if c.get("differs_from_pins") is not None:
            lines += ["", f"Case 2's fresh resolution picked, against the pins: " + ", ".join(
                f"{n} {v['fresh']} (pinned {v['pinned']})" for n, v in c["differs_from_pins"].items())
                + f"; and, not pinned: {', '.join(c['fresh_not_pinned']) or 'none'}."]
        if c.get("dropped") is not None:
            lines += ["", f"Case 3 dropped: {', '.join(c['dropped'])}."]
    lines += ["", ("OK: each defect fails the stand-in, and the unmodified stand-in passes." if all_ok
                   else "NOT OK: see the cases above and bench/out/defects/<case>/console.txt.")]
    (HERE / "results" / "gpu_standin.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
