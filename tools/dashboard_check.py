"""Open a study in optuna-dashboard with a real, headless browser: check what a user sees, and screenshot it.

    python tools/dashboard_check.py --study light --results results --out results/dashboard
    python tools/dashboard_check.py --search --space light.yaml --budget cpu --trials 8 --out results/dashboard

Serves the study with optuna-dashboard's WSGI app on a free local port, drives Chromium (Debian's
``chromium``, or ``--browser PATH``) through Playwright, and checks four things a user relies on:

* the History page's Pareto Front plot has numeric axes (``linear``, not ``category``: text axes
  are what infinite values sent as "inf" strings produce) and points;
* the Analytics page's "EDF for <objective>" plots have data;
* the knee's trial page shows its note with the objective names;
* that page's ``samples.png`` loads as an image of non-zero size.

Writes ``checks.json`` (every figure, the command, the machine) plus ``overview.png`` and
``trial.png`` into ``--out``, and exits 1 when a check fails.  ``--search`` first runs a search
(``nas.search.run_search``) into ``--results`` so that one command makes the committed
screenshots.  Needs the ``playwright`` package; the browser it downloads itself is not needed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Chromium on a closed network: no background connections, no sandbox as root, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A plot's axis types and how many of its points have finite numeric coordinates.
_PLOT_INFO = """(id) => { const g = document.getElementById(id); if (!g || !g._fullLayout) return null;
  const finite = (v) => typeof v === 'number' && isFinite(v);
  const points = (g.data || []).reduce((n, t) => n + (t.x || []).filter(
      (x, i) => finite(x) && finite((t.y || [])[i])).length, 0);
  return {x: g._fullLayout.xaxis.type, y: g._fullLayout.yaxis.type, points: points}; }"""


def find_browser(explicit: str | None = None) -> str | None:
    """``explicit``, else ``$UNET_NAS_BROWSER``, else the first Chromium-like browser on ``PATH``."""
    for candidate in (explicit, os.environ.get("UNET_NAS_BROWSER"), *BROWSERS):
        if candidate and (found := shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)):
            return found
    return None


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(storage_url: str, artifact_dir: Path) -> tuple[Any, str]:
    """optuna-dashboard for ``storage_url`` on a free local port; returns (server, base URL)."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    app = optuna_dashboard.wsgi(storage_url, artifact_store=FileSystemArtifactStore(str(artifact_dir)))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def check(storage_url: str, study_name: str, artifact_dir: Path, out: Path, *, browser: str) -> dict[str, Any]:
    """Open the study's pages, run the checks and take the screenshots; returns the findings."""
    import optuna
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from nas.pareto import front_trials, knee_trial

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    knee = knee_trial(study, front_trials(study)).number
    names = study.metric_names or []
    server, base = serve(storage_url, artifact_dir)
    out.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {"study": study_name, "trials": len(study.trials), "knee": knee,
                             "infeasible": sum(t.user_attrs.get("status") == "infeasible" for t in study.trials)}
    found.update(pareto=None, edf={}, note_names={}, note_title="", images=[])
    try:
        with sync_playwright() as pw:
            chrome = pw.chromium.launch(executable_path=browser, args=CHROMIUM_ARGS)
            page = chrome.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30000)
            # A page that never shows what it should is a failed check, not a crash.
            with contextlib.suppress(PlaywrightTimeout):
                page.goto(f"{base}/dashboard/studies/{study._study_id}")
                page.wait_for_function("() => document.getElementById('graph-pareto-front')?._fullLayout")
                page.wait_for_timeout(1000)  # the plot's traces settle after the layout
                found["pareto"] = page.evaluate(_PLOT_INFO, "graph-pareto-front")
                page.screenshot(path=str(out / "overview.png"), full_page=True)
            with contextlib.suppress(PlaywrightTimeout):
                page.goto(f"{base}/dashboard/studies/{study._study_id}/analytics")
                page.wait_for_function("() => document.getElementById('plot-edf-0')?._fullLayout")
                page.wait_for_timeout(1000)
                found["edf"] = {name: page.evaluate(_PLOT_INFO, f"plot-edf-{i}") for i, name in enumerate(names)}
            with contextlib.suppress(PlaywrightTimeout):
                page.set_viewport_size({"width": 1400, "height": 2200})  # the trial pane scrolls in the page
                page.goto(f"{base}/dashboard/studies/{study._study_id}/trials?numbers={knee}")
                page.wait_for_selector(f"text=Trial {knee} (trial_id")
                page.wait_for_timeout(1500)  # the note and the artifacts load after the heading
                text = page.inner_text("body")
                found["note_names"] = {name: f"{name}\t" in text or f"{name} " in text for name in names}
                found["note_title"] = next((ln for ln in text.splitlines() if ln.startswith(f"Trial {knee}:")), "")
                found["images"] = page.evaluate("() => Array.from(document.images).map(i => [i.naturalWidth, "
                                                "i.naturalHeight])")
                page.screenshot(path=str(out / "trial.png"), full_page=True)
            chrome.close()
    finally:
        server.shutdown()
    pareto, edf = found["pareto"] or {}, found["edf"]
    found["checks"] = {
        "pareto_axes_numeric": pareto.get("x") == pareto.get("y") == "linear" and pareto.get("points", 0) > 0,
        "edf_plots_have_data": bool(edf) and all(v and v["points"] > 0 for v in edf.values()),
        "trial_note_names_objectives": bool(found["note_title"]) and all(found["note_names"].values()),
        "samples_image_loads": any(w > 0 and h > 0 for w, h in found["images"]),
    }
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=None, help="study name (default: the space's name)")
    parser.add_argument("--results", default="results", help="the search's --out (storage and artifacts)")
    parser.add_argument("--storage", default=None, help="storage URL (default: the search's, under --results)")
    parser.add_argument("--out", default="results/dashboard", help="where checks.json and the screenshots go")
    parser.add_argument("--browser", default=None, help="Chromium executable (default: found on PATH)")
    parser.add_argument("--search", action="store_true", help="run the search below first")
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from nas.io import write_json
    from nas.space import load_space
    from nas.study import find_storage_url

    browser = find_browser(args.browser)
    if browser is None:
        print("error: no Chromium found (install Debian's chromium, or pass --browser PATH)", file=sys.stderr)
        return 2
    study_name = args.study or load_space(args.space, check_constraints=False).name
    if args.search:
        from nas.search import SearchSettings, run_search

        outcome = run_search(SearchSettings(space=args.space, budget=args.budget, trials=args.trials, seed=args.seed,
                                            out=args.results, study_name=study_name, storage=args.storage))
        if outcome.exit_code:
            return outcome.exit_code
    storage = args.storage or find_storage_url(study_name, args.results)
    found = check(storage, study_name, Path(args.results) / study_name / "artifacts", Path(args.out),
                  browser=browser)
    found.update(command=shlex.join(["python", "tools/dashboard_check.py", *sys.argv[1:]]),
                 date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 machine={"platform": platform.platform(), "cpus": os.cpu_count()}, browser=browser)
    write_json(Path(args.out) / "checks.json", found)
    for name, ok in found["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"wrote {Path(args.out) / 'checks.json'}, overview.png, trial.png")
    return 0 if all(found["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
