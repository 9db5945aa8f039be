"""What a careless or hostile caller can hand spywatch, tried case by case on a real root.

A root is built once: a tiny PatchTST champion trained and published for 2024-05-31 from
``data/spy_daily.csv``, with ``SPYWATCH_SIGNING_KEY`` set (a deployment that signs its models).
Then every case runs against it, or against its own copy when the case alters the root (a model
file, a symlink): the CLI as a separate process (``python -m spywatch``, the real exit code), the
HTTP cases against ``spywatch serve``'s server on a free port (raw requests, nothing normalised).

Each row: the case, the exit code or HTTP status, the first 100 characters of the message,
whether the published outputs are unchanged (``predictions.parquet`` and every file of the
sessions published before, byte for byte; ``latest.json`` may only gain a stale mark, shown in
its own column), and whether that is what the case should give.

    python bench/bad_inputs.py            # -> bench/results/bad_inputs.{json,md}
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO / "data" / "spy_daily.csv"
KEY = "bench-signing-key-" + "0" * 32
PUBLISHED = "2024-05-31"  # the base root's published session
NEXT = "2024-06-28"  # the session each bad night is for
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}


@dataclass
class Case:
    group: str
    name: str
    expect: int  # exit code, or HTTP status
    run: Callable[[Path], tuple[int, str, int]]  # root -> (code, message, bytes of output or response)
    own_root: bool = False  # the case alters the root: it gets a copy
    prepare: Callable[[Path], None] | None = None


@dataclass
class Row:
    group: str
    name: str
    expect: int
    got: int
    message: str
    unchanged: bool
    latest: str
    output_bytes: int
    latest_bytes: int
    seconds: float
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ok = self.got == self.expect and self.unchanged


# ----------------------------------------------------------------------------- the base root


def build_base(base: Path) -> None:
    from spywatch.night import PipelineConfig, run_night

    if (base / "published" / "latest.json").exists():
        return
    shutil.rmtree(base, ignore_errors=True)
    night = run_night(PipelineConfig(source=f"csv:{DATA}", root=base, as_of=PUBLISHED, model=TINY, max_epochs=2), force=True)
    if night.status != "published":
        raise SystemExit(f"the base root did not publish: {night.summary()}")


def snapshot(root: Path) -> dict[str, str]:
    """Hashes of what is published: the cumulative table and every file of every published
    session folder (failed re-runs' ``attempts/`` are additions beside them, not changes)."""
    out = {}
    pub = root / "published"
    table = pub / "predictions.parquet"
    if table.exists():
        out["predictions.parquet"] = hashlib.sha256(table.read_bytes()).hexdigest()
    sessions = pub / "sessions"
    for link in sorted(sessions.iterdir()) if sessions.is_dir() else ():
        folder = link.resolve()
        if json.loads((folder / "audit.json").read_text()).get("status") != "published":
            continue  # a failure audit (a session never published): nothing published to keep
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and rel.parts[0] != "attempts":
                out[f"sessions/{link.name}/{rel}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def latest_state(root: Path) -> dict:
    try:
        return json.loads((root / "published" / "latest.json").read_text())
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- CLI cases


def cli(*argv: str, root_arg: bool = True) -> Callable[[Path], tuple[int, str, int]]:
    def run(root: Path) -> tuple[int, str, int]:
        args = [a.replace("{root}", str(root)) for a in argv]
        if root_arg:
            args += ["--root", str(root)]
        out = subprocess.run([sys.executable, "-m", "spywatch", *args], capture_output=True, text=True,
                             timeout=900, cwd=REPO, env={**os.environ, "SPYWATCH_SIGNING_KEY": KEY})
        return out.returncode, _message(out.stdout + "\n" + out.stderr), len(out.stdout) + len(out.stderr)
    return run


def night(source: str, *extra: str) -> Callable[[Path], tuple[int, str, int]]:
    return cli("run", "--no-prefect", "--retrain", "never", "--as-of", NEXT, "--source", source, *extra)


def _message(text: str) -> str:
    text = text.replace(f"{REPO}/", "")  # paths relative to the checkout: the table shows the message
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for marker in ("error:", "FAILURE", "BAD:", "refused"):
        for line in lines:
            if marker in line:
                return line
    return lines[-1] if lines else ""


def tomorrow() -> str:
    import pandas as pd

    return (pd.Timestamp.now(tz="America/New_York").normalize() + pd.Timedelta(days=1)).date().isoformat()


# ----------------------------------------------------------------------------- CSV files


def csv_case(name: str, make: Callable[[list[str]], list[str] | bytes]) -> Callable[[Path], tuple[int, str, int]]:
    """A CSV made from the real file's rows up to NEXT by ``make`` (lines -> lines, or raw bytes)."""
    def run(root: Path) -> tuple[int, str, int]:
        lines = [ln for ln in DATA.read_text().splitlines() if ln[:10] <= NEXT or ln.startswith("Date")]
        made = make(lines)
        path = root.parent / f"{root.name}-{name}.csv"
        path.write_bytes(made if isinstance(made, bytes) else ("\n".join(made) + "\n").encode())
        return night(f"csv:{path.relative_to(REPO)}")(root)
    return run


def set_field(lines: list[str], row: int, col: int, value: str) -> list[str]:
    fields = lines[row].split(",")
    fields[col] = value
    return [*lines[:row], ",".join(fields), *lines[row + 1:]]


def swap_rows(lines: list[str]) -> list[str]:
    return [*lines[:-3], lines[-2], lines[-3], lines[-1]]


# ----------------------------------------------------------------------------- model files


def champion_dir(root: Path) -> Path:
    record = json.loads((root / "models" / "champion.json").read_text())
    return root / "models" / "versions" / record["version"]


def recompute_manifest(vdir: Path, signature: str | None = "keep") -> None:
    manifest = json.loads((vdir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (vdir / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    if signature is None:
        manifest.pop("signature", None)
    elif signature != "keep":
        manifest["signature"] = signature
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def shift_bias(root: Path) -> None:
    import torch

    vdir = champion_dir(root)
    state = torch.load(vdir / "weights.pt", map_location="cpu", weights_only=True)
    bias = [k for k in state if k.endswith("bias")][-1]
    state[bias] = state[bias] + 3.0
    torch.save(state, vdir / "weights.pt")
    recompute_manifest(vdir)


def resign_with(other_key: str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        from spywatch.artifact import read_manifest

        vdir = champion_dir(root)
        manifest = read_manifest(vdir)
        recompute_manifest(vdir, signature=manifest.signed_with(other_key.encode()))
    return prepare


def malicious_pickle(root: Path) -> None:
    import torch

    vdir = champion_dir(root)
    torch.save({"payload": os.system}, vdir / "weights.pt")
    recompute_manifest(vdir)


def truncate_weights(root: Path) -> None:
    weights = champion_dir(root) / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100])


def drop_signature(root: Path) -> None:
    recompute_manifest(champion_dir(root), signature=None)


def smuggle_file(root: Path) -> None:
    (champion_dir(root) / "extra.py").write_text("import os\n")


def garble_manifest(root: Path) -> None:
    (champion_dir(root) / "manifest.json").write_text("{not json")


def alias_outside(root: Path) -> None:
    path = root / "models" / "champion.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "version": "../../etc"}))


# ----------------------------------------------------------------------------- HTTP requests to serve


def http(raw: bytes, prepare: Callable[[Path], None] | None = None) -> Callable[[Path], tuple[int, str, int]]:
    def run(root: Path) -> tuple[int, str, int]:
        from spywatch.serve import make_server

        if prepare is not None:
            prepare(root)
        server = make_server(root, "127.0.0.1", 0, timeout=2.0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        log = io.StringIO()  # the server's access and error log (written to sys.stderr by its threads)
        try:
            with contextlib.redirect_stderr(log):
                with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
                    sock.sendall(raw)
                    data = b""
                    while True:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                time.sleep(0.05)  # the handler logs after it answered
        finally:
            server.shutdown()
            server.server_close()
        size = len(data) + len(log.getvalue())
        if not data:
            return 0, "connection closed by the server, no response", 0
        if not data.startswith(b"HTTP/"):  # a request line without a version gets an HTTP/0.9 answer: the body
            code = re.search(rb"Error code: (\d+)", data)
            return (int(code.group(1)) if code else -1), "(HTTP/0.9: no status line) " + " ".join(
                data.decode("utf-8", "replace").split())[:60], size
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = head.decode("latin-1").split("\r\n")[1:]
        shown = [h for h in headers if h.split(":")[0].lower() in ("cache-control", "x-content-type-options")]
        return status, "; ".join(shown) + " | " + " ".join(body.decode("utf-8", "replace").split())[:60], size
    return run


def get(path: str, prepare: Callable[[Path], None] | None = None) -> Callable[[Path], tuple[int, str, int]]:
    return http(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"), prepare)


def stalled(root: Path) -> tuple[int, str, int]:
    """Half a request line, then nothing: the server must close it (code 0 = closed, no response)."""
    from spywatch.serve import make_server

    server = make_server(root, "127.0.0.1", 0, timeout=2.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as sock:
            t0 = time.perf_counter()
            sock.sendall(b"GET /lat")
            data = sock.recv(1024)
            waited = time.perf_counter() - t0
    finally:
        server.shutdown()
        server.server_close()
    return (0 if not data else 1), f"closed by the server after {waited:.1f} s (timeout 2 s)", len(data)


def link(name: str, target: str) -> Callable[[Path], None]:
    def prepare(root: Path) -> None:
        path = root / "published" / name
        path.unlink(missing_ok=True)
        path.symlink_to(target)
    return prepare


# ----------------------------------------------------------------------------- the cases


def cases() -> list[Case]:
    fleet = REPO / "bench" / "out" / "bad_inputs" / "fleets"
    fleet.mkdir(parents=True, exist_ok=True)
    fleets = {"traversal": "tickers: [SPY, '../x']\n", "not_yaml": "tickers: [SPY\n", "unknown_key": "tickerz: [SPY]\n",
              "not_a_list": "tickers: SPY\n", "twice": "tickers: [SPY, SPY]\n",
              "bad_source": "source: ftp://x\ntickers: [SPY]\n", "empty": ""}
    for name, text in fleets.items():
        (fleet / f"{name}.yaml").write_text(text)
    afile = fleet / "a-file"
    afile.write_text("x")
    c = [
        # -- the command line
        Case("cli", "--as-of tomorrow (synthetic source)", 2, cli("run", "--no-prefect", "--as-of", tomorrow())),
        Case("cli", "--as-of 2030-01-02 (csv source)", 2, cli("run", "--no-prefect", "--as-of", "2030-01-02",
                                                               "--source", f"csv:{DATA}")),
        Case("cli", "--as-of 31/12/2024", 2, cli("run", "--no-prefect", "--as-of", "31/12/2024")),
        Case("cli", "--as-of 2024-02-30", 2, cli("run", "--no-prefect", "--as-of", "2024-02-30")),
        Case("cli", "--ticker ../../1", 2, cli("run", "--no-prefect", "--as-of", NEXT, "--ticker", "../../1")),
        Case("cli", "--ticker a/b", 2, cli("run", "--no-prefect", "--as-of", NEXT, "--ticker", "a/b")),
        Case("cli", "--ticker '' (empty)", 2, cli("run", "--no-prefect", "--as-of", NEXT, "--ticker", "")),
        Case("cli", "--ticker of 100,000 characters", 2, cli("run", "--no-prefect", "--ticker", "A" * 100_000)),
        Case("cli", "--root that is a file", 2, cli("run", "--no-prefect", "--root", str(afile), root_arg=False)),
        Case("cli", "--source unknown:x", 2, cli("run", "--no-prefect", "--as-of", NEXT, "--source", "unknown:x")),
        Case("cli", "--policy nope", 2, cli("run", "--no-prefect", "--policy", "nope")),
        Case("cli", "--tickers SPY,../x", 2, cli("run", "--tickers", "SPY,../x", "--as-of", NEXT)),
        *[Case("fleet file", f"--fleet {name}.yaml", 2, cli("run", "--fleet", str(fleet / f"{name}.yaml"),
                                                             "--as-of", NEXT)) for name in fleets],
        Case("fleet file", "--fleet that does not exist", 2, cli("run", "--fleet", str(fleet / "nope.yaml"))),
        Case("cli", "backfill --end tomorrow", 2, cli("backfill", "--source", "synthetic", "--start", "2024-01-02",
                                                      "--end", tomorrow(), "--out", "{root}/../bf.json")),
        Case("cli", "backfill --start after --end", 2, cli("backfill", "--source", "synthetic", "--start",
                                                           "2024-06-01", "--end", "2024-01-02", "--out",
                                                           "{root}/../bf.json")),
        Case("cli", "models show ../../etc", 2, cli("models", "show", "../../etc")),
        Case("cli", "models promote an unknown version", 2, cli("models", "promote", "nope", "--note", "x")),
        Case("cli", "serve --root that is a file", 2, cli("serve", "--root", str(afile), root_arg=False)),
        # -- CSV files (each a night for NEXT; the store, models and published outputs must stay)
        Case("csv", "a 5 MB Close field", 1, csv_case("bigfield", lambda ls: set_field(ls, len(ls) - 3, 4, "9" * 5_000_000)), True),
        Case("csv", "a 1 MB Date field", 1, csv_case("bigdate", lambda ls: set_field(ls, len(ls) - 3, 0, "2" * 1_000_000)), True),
        Case("csv", "a header of 1 MB", 1, csv_case("bighead", lambda ls: ["Date," + "X" * 1_000_000, *ls[1:]])),
        Case("csv", "no Volume column", 1, csv_case("novol", lambda ls: [",".join(ln.split(",")[:-1]) for ln in ls])),
        Case("csv", "an empty file", 1, csv_case("empty", lambda ls: b"")),
        Case("csv", "binary garbage", 1, csv_case("binary", lambda ls: bytes(range(256)) * 100)),
        Case("csv", "Latin-1 bytes in a row", 1, csv_case("latin1", lambda ls: ("\n".join(ls[:-2]) + "\n" + ls[-2].replace(",", ",\xe9", 1) + "\n" + ls[-1] + "\n").encode("latin-1")), True),
        Case("csv", "dates out of order", 1, csv_case("order", swap_rows)),
        Case("csv", "High below Low on the last bar", 1, csv_case("highlow", lambda ls: set_field(ls, len(ls) - 1, 2, "1.0")), True),
        Case("csv", "a negative Volume", 1, csv_case("negvol", lambda ls: set_field(ls, len(ls) - 2, 6, "-5")), True),
        Case("csv", "Close NaN on the last bar", 1, csv_case("nan", lambda ls: set_field(ls, len(ls) - 1, 4, "nan")), True),
        Case("csv", "a duplicated date", 1, csv_case("dup", lambda ls: [*ls[:-1], ls[-2], ls[-1]])),
        Case("csv", "the last bar missing (stale file)", 1, csv_case("short", lambda ls: ls[:-1])),
        Case("csv", "a price 1000x the day before", 1, csv_case("spike", lambda ls: set_field(ls, len(ls) - 1, 4, "550000")), True),
        # -- model files (the champion of a copy of the root, with the key set)
        Case("model", "weights.pt truncated", 1, night(f"csv:{DATA}"), True, truncate_weights),
        Case("model", "+3 logits, checksums recomputed (no key)", 1, night(f"csv:{DATA}"), True, shift_bias),
        Case("model", "signed with another key", 1, night(f"csv:{DATA}"), True, resign_with("another-key-" + "1" * 20)),
        Case("model", "signature removed", 1, night(f"csv:{DATA}"), True, drop_signature),
        Case("model", "a pickle weights_only refuses", 1, night(f"csv:{DATA}"), True, malicious_pickle),
        Case("model", "an unlisted file in the version", 1, night(f"csv:{DATA}"), True, smuggle_file),
        Case("model", "manifest.json not JSON", 1, night(f"csv:{DATA}"), True, garble_manifest),
        Case("model", "champion alias naming ../../etc", 1, night(f"csv:{DATA}"), True, alias_outside),
        Case("model", "models list --verify after +3 logits", 1, cli("models", "list", "--verify"), True, shift_bias),
        # -- HTTP requests to spywatch serve
        Case("http", "GET /", 200, get("/")),
        Case("http", "GET /latest.json", 200, get("/latest.json")),
        Case("http", f"GET /sessions/{PUBLISHED}/report.html", 200, get(f"/sessions/{PUBLISHED}/report.html")),
        Case("http", "GET /../models/champion.json", 404, get("/../models/champion.json")),
        Case("http", "GET /%2e%2e/%2e%2e/etc/passwd", 404, get("/%2e%2e/%2e%2e/etc/passwd")),
        Case("http", "GET /.journal.json (hidden)", 404, get("/.journal.json")),
        Case("http", "GET /.runs/ (hidden folder)", 404, get("/.runs/")),
        Case("http", "GET /sessions/ (no listing)", 404, get("/sessions/")),
        Case("http", "symlink published/passwd -> /etc/passwd", 404, get("/passwd", link("passwd", "/etc/passwd")), True),
        Case("http", "symlink published/models -> ../models", 404, get("/models/champion.json", link("models", "../models")), True),
        Case("http", "GET /%00", 400, get("/%00")),
        Case("http", "GET /%ff%fe (not UTF-8)", 400, get("/%ff%fe")),
        Case("http", "GET of a 20,000-character path", 404, get("/" + "a" * 20_000)),
        Case("http", "POST /latest.json", 501, http(b"POST /latest.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")),
        Case("http", "a request line that is not HTTP", 400, http(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")),
        Case("http", "half a request line, then silence", 0, stalled),
    ]
    return c


# ----------------------------------------------------------------------------- running and recording


def run_case(case: Case, base: Path, work: Path, i: int) -> Row:
    root = base
    if case.own_root or case.group == "csv":
        root = work / f"case{i:02d}" / "root"
        shutil.rmtree(root.parent, ignore_errors=True)
        shutil.copytree(base, root, symlinks=True)
        if case.prepare is not None:
            case.prepare(root)
    before, latest_before = snapshot(root), latest_state(root)
    t0 = time.perf_counter()
    code, message, size = case.run(root)
    seconds = time.perf_counter() - t0
    latest = latest_state(root)
    if latest == latest_before:
        latest_note = "unchanged"
    elif latest.get("stale") and latest.get("session") == latest_before.get("session"):
        latest_note = "marked stale"
    else:
        latest_note = f"CHANGED to {latest.get('session')}"
    after = snapshot(root)  # a failed night for a new session adds its failure audit: not a change
    unchanged = all(after.get(k) == v for k, v in before.items()) and not latest_note.startswith("CHANGED")
    if root is base and latest_note == "marked stale":  # keep the shared root as it was for the next case
        (base / "published" / "latest.json").write_text(json.dumps(latest_before, indent=2, sort_keys=True) + "\n")
    latest_bytes = (root / "published" / "latest.json").stat().st_size
    return Row(case.group, case.name, case.expect, code, message[:100], unchanged, latest_note, size, latest_bytes,
               round(seconds, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "bad_inputs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bad_inputs.json")
    parser.add_argument("--only", default="", help="run the cases whose group is one of these (comma-separated)")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ["SPYWATCH_SIGNING_KEY"] = KEY
    from machine import machine

    started = machine()
    t0 = time.perf_counter()
    base = args.work / "base"
    build_base(base)
    groups = set(filter(None, args.only.split(",")))
    rows = []
    for i, case in enumerate(cases()):
        if groups and case.group not in groups:
            continue
        row = run_case(case, base, args.work, i)
        print(f"{'ok ' if row.ok else 'BAD'} {row.group:10} {row.name:45} {row.got:4} {row.message[:70]}", flush=True)
        rows.append(row)
    record = {"ran": "python bench/bad_inputs.py" + (f" --only {args.only}" if args.only else ""),
              "machine": started, "wall_s": round(time.perf_counter() - t0, 1),
              "rows": [r.__dict__ for r in rows], "all_ok": all(r.ok for r in rows)}
    from spywatch.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(args.out, record)
    atomic_write_text(args.out.with_suffix(".md"), render(record))
    print(f"{sum(r.ok for r in rows)}/{len(rows)} as they should be; wrote {args.out} and .md")
    return 0 if record["all_ok"] else 1


def render(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# Bad inputs: what a careless or hostile caller can hand spywatch (bench/bad_inputs.py)",
        "",
        f"- ran: `{record['ran']}`, {m['date']}, git {m.get('git')}, {m['cpu']} ({m['host_cores']} cores), "
        f"{record['wall_s'] / 60:.1f} min",
        f"- root: a tiny champion trained and published for {PUBLISHED} from `data/spy_daily.csv`, models signed "
        f"(`SPYWATCH_SIGNING_KEY` set); each night case is a `spywatch run --no-prefect --retrain never --as-of "
        f"{NEXT}` as its own process; model and symlink cases on a copy of the root; HTTP cases are raw requests "
        f"to `spywatch serve`'s server (2 s connection timeout)",
        "- *published unchanged*: `predictions.parquet` and every file of the sessions published before, byte for "
        "byte; `latest.json` may only be marked stale (its own column); *code*: the exit code (2 usage, 1 a "
        "finding, refused before or during the night) or the HTTP status (0: the server closed the connection); "
        "*output bytes*: stdout + stderr of the command, or the HTTP response plus the server's log lines (bounded "
        "echoes: a 5 MB field or a 20 kB path stays in the input)",
        f"- **{sum(r['ok'] for r in record['rows'])} of {len(record['rows'])} cases as they should be**",
        "",
        "| # | group | case | expected | got | message (first 100 characters) | published unchanged | latest.json "
        "| output bytes | latest.json bytes | s | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(record["rows"], 1):
        message = r["message"].replace("|", "\\|").replace("`", "'")
        lines.append(f"| {i} | {r['group']} | {r['name']} | {r['expect']} | {r['got']} | {message} | "
                     f"{'yes' if r['unchanged'] else 'NO'} | {r['latest']} | {r['output_bytes']:,} | "
                     f"{r['latest_bytes']:,} | {r['seconds']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
