"""Dependency audit of the pinned requirements, honest about what it could check.

    python tools/audit.py [-r requirements.txt] [--strict] [--timeout 15]

1. ``pip-audit`` (when installed) checks every ``name==version`` pin against OSV, then against PyPI's advisory data
   (``--no-deps --disable-pip``: the pins as written, no resolver, no virtualenv).
2. Where pip-audit could not check a pin (service unreachable, or PyPI's per-version endpoint missing, which pip-audit
   reports as "not found on PyPI"), the project's PyPI JSON (``/pypi/NAME/json``) is read: its ``vulnerabilities``
   list is for the *latest* release, so it settles a pin only when the pin is the latest release. Older pins are
   listed as "not audited" with the latest version; yanked pins are flagged.
3. The summary says how many pins were audited, which are vulnerable (with the fixed versions) and which could not
   be checked. Nothing reachable at all: ``audit skipped: vulnerability service unreachable``.

Exit status: 1 when a pinned version has a known vulnerability; otherwise 0, also when the audit was skipped or
partial (CI on an offline machine must not fail for that), unless ``--strict`` (then 2 when anything was not
audited).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)==([^\s#;]+)", re.M)


@dataclass
class Result:
    name: str
    version: str
    audited_by: str = ""  # "pip-audit (osv)", "pip-audit (pypi)", "pypi latest", or "" when not audited
    vulns: list[dict] = field(default_factory=list)  # {"id", "fix_versions", "aliases"}
    note: str = ""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, Result]:
    pins = {}
    for name, version in PIN.findall(path.read_text(encoding="utf-8")):
        pins[canonical(name)] = Result(name, version)
    return pins


def pip_audit(requirements: Path, service: str, timeout_s: float) -> dict | None:
    """pip-audit's JSON report, or None when pip-audit is missing or its service failed."""
    exe = shutil.which("pip-audit")
    cmd = [exe] if exe else [sys.executable, "-m", "pip_audit"]
    args = [*cmd, "-r", str(requirements), "--no-deps", "--disable-pip", "--progress-spinner", "off"]
    args += ["--format", "json", "--vulnerability-service", service, "--timeout", str(int(timeout_s))]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"pip-audit ({service}) did not run: {exc}", file=sys.stderr)
        return None
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        if "No module named pip_audit" not in tail[0]:
            print(f"pip-audit ({service}) failed: {tail[0][:200]}", file=sys.stderr)
        return None


def apply_pip_audit(report: dict, pins: dict[str, Result], service: str) -> int:
    """Fill in what pip-audit checked; returns the number of pins it audited."""
    audited = 0
    for dep in report.get("dependencies", []):
        res = pins.get(canonical(dep.get("name", "")))
        if res is None or res.audited_by or dep.get("skip_reason"):
            continue
        res.audited_by = f"pip-audit ({service})"
        res.vulns = [
            {"id": v.get("id"), "fix_versions": v.get("fix_versions", []), "aliases": v.get("aliases", [])}
            for v in dep.get("vulns", [])
        ]
        audited += 1
    return audited


def pypi_latest(res: Result, timeout_s: float) -> None:
    """Settle a pin from the project's PyPI JSON when it is the latest release (see the module docstring)."""
    # urllib, not httpx: the audit must run in a bare interpreter (e.g. a pip-audit virtualenv).
    url = f"https://pypi.org/pypi/{urllib.parse.quote(res.name)}/json"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        res.note = f"PyPI answered {exc.code}"
        return
    except (OSError, ValueError) as exc:
        res.note = f"PyPI unreachable ({type(exc).__name__})"
        return
    latest = data["info"]["version"]
    files = data.get("releases", {}).get(res.version)
    if files is None:
        res.note = f"version {res.version} is not on PyPI (latest {latest})"
        return
    if files and all(f.get("yanked") for f in files):
        reason = files[0].get("yanked_reason") or "no reason given"
        res.note = f"yanked on PyPI: {reason}"
    if res.version != latest:
        res.note = (res.note + "; " if res.note else "") + f"not audited: pinned {res.version}, latest {latest}"
        return
    res.audited_by = "pypi latest"
    res.vulns = [
        {"id": v.get("id"), "fix_versions": v.get("fixed_in", []), "aliases": v.get("aliases", [])}
        for v in data.get("vulnerabilities", [])
        if not v.get("withdrawn")
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--requirements", type=Path, default=ROOT / "requirements.txt")
    ap.add_argument("--strict", action="store_true", help="exit 2 when some pins could not be audited")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds per network request")
    args = ap.parse_args()
    pins = read_pins(args.requirements)
    for service in ("osv", "pypi"):
        if all(r.audited_by for r in pins.values()):
            break
        report = pip_audit(args.requirements, service, args.timeout)
        if report is not None:
            n = apply_pip_audit(report, pins, service)
            print(f"pip-audit ({service}): {n} of {len(pins)} pins audited")
    rest = [r for r in pins.values() if not r.audited_by]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: pypi_latest(r, args.timeout), rest))

    audited = [r for r in pins.values() if r.audited_by]
    vulnerable = [r for r in audited if r.vulns]
    missing = [r for r in pins.values() if not r.audited_by]
    for r in vulnerable:
        for v in r.vulns:
            fixed = ", ".join(v["fix_versions"]) or "no fixed version yet"
            print(f"VULNERABLE {r.name}=={r.version}: {v['id']} ({', '.join(v['aliases'])}) fixed in {fixed}")
    for r in pins.values():
        if r.note:
            print(f"  {r.name}=={r.version}: {r.note}")
    if not audited:
        print(f"audit skipped: vulnerability service unreachable ({len(pins)} pins not audited)")
        return 2 if args.strict else 0
    by: dict[str, int] = {}
    for r in audited:
        by[r.audited_by] = by.get(r.audited_by, 0) + 1
    how = ", ".join(f"{n} by {k}" for k, n in sorted(by.items()))
    print(
        f"audit: {len(audited)} of {len(pins)} pins audited ({how}); {len(vulnerable)} with known vulnerabilities; "
        f"{len(missing)} not audited"
    )
    if vulnerable:
        return 1
    return 2 if args.strict and missing else 0


if __name__ == "__main__":
    sys.exit(main())
