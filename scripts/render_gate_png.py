"""Render the gate report (reports/gate.html) to a PNG with headless Chromium: to look at the page the way a
reviewer sees it, or attach it where HTML is not shown. Needs a `chromium` binary (Debian: apt-get install
chromium); runs fully offline (the page is self-contained)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
QUIET_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-default-apps",
    "--mute-audio",
]


def find_browser(explicit: str | None) -> str:
    for name in [explicit] if explicit else BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"error: no Chromium found (tried {', '.join([explicit] if explicit else BROWSERS)}); "
        "install it with `apt-get install -y chromium` or pass --browser"
    )


def render(html: Path, png: Path, *, browser: str, width: int, height: int, timeout: float) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gate-png-") as profile:
        cmd = [
            browser,
            *QUIET_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"error: {browser} exited {proc.returncode} without writing {png}: {' | '.join(tail)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("html", nargs="?", type=Path, default=Path("reports/gate.html"), help="default: reports/gate.html")
    p.add_argument("-o", "--output", type=Path, default=None, help="PNG to write (default: next to the HTML)")
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, default=2400)
    p.add_argument(
        "--browser", default=None, help=f"Chromium binary (default: the first of {', '.join(BROWSERS)} on PATH)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up (default: 60)")
    args = p.parse_args(argv)
    if not args.html.is_file():
        print(f"error: {args.html}: not found (run the gate first: `dvc repro` or `mllmcl gate`)", file=sys.stderr)
        return 2
    out = args.output or args.html.with_suffix(".png")
    try:
        render(
            args.html,
            out,
            browser=find_browser(args.browser),
            width=args.width,
            height=args.height,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"error: the browser took more than {args.timeout:.0f} s", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
