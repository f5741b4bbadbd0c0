"""The MLflow UI answers "which transfers help, which hurt": URL logic on a real store, then a real browser.

The browser tests run a small real sweep, serve it with `mlflow ui` on 127.0.0.1, and drive Debian's headless
Chromium through Playwright (no browser download), asserting on the rendered pages. Screenshots go to
``$TEST_ARTIFACTS_DIR`` when set, else to a temporary folder.
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

import pytest
from conftest import ROOT, free_port, run_entry, stop, wait_healthy
from mlflow.tracking import MlflowClient

from benchmark import ui

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# the small real sweep of tests/test_sweep.py, without transferability scores (not what this test looks at)
SWEEP = ["source=synth_digits,shapes", "target=digits", "strategy=finetune,linear_probe", "label_budget=5", "seed=0,1",
         "source.weights.recipe.epochs=1", "source.weights.dataset.n_per_class=40", "budget.epochs=1",
         "budget.min_steps=6", "budget.batch_size=32", "tracking.experiment=ui",
         "scores=false", "trainer.threads=1"]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
       "DO_NOT_TRACK": "true"}  # fmt: skip
ENV.pop("MLFLOW_TRACKING_URI", None)
NAME_COL, VERDICT_COL, DELTA_COL = "attributes.`Run Name`", "tags.`verdict`", "metrics.`delta`"
VERDICTS = {"positive", "negative", "equivalent", "inconclusive", "insufficient seeds"}


# ----------------------------------------------------------------------------------------------------------------
# URL logic on a real SQLite store, no server


def _run(client: MlflowClient, exp_id: str, role: str, start_ms: int, **tags: str) -> str:
    run = client.create_run(exp_id, start_time=start_ms, tags={"role": role, **tags}, run_name=f"{role}_{start_ms}")
    client.set_terminated(run.info.run_id, end_time=start_ms + 1)
    return run.info.run_id


@pytest.fixture
def sweeps(store):
    """Experiments ``a`` (sweep at t=1 s), ``b`` (sweeps at t=2 s and t=3 s) and ``c`` (a newer run, no sweep)."""
    client = MlflowClient(store)
    ids = {name: client.create_experiment(name) for name in ("a", "b", "c")}
    runs = {
        "a": _run(client, ids["a"], "sweep", 1000, sweep_id="s-a"),
        "b_old": _run(client, ids["b"], "sweep", 2000, sweep_id="s-b1"),
        "b": _run(client, ids["b"], "sweep", 3000, sweep_id="s-b2"),
        "c": _run(client, ids["c"], "transfer", 5000),
    }
    return client, ids, runs


def test_default_experiment_is_the_one_with_the_newest_sweep(sweeps):
    client, ids, _ = sweeps
    assert ui.find_experiment(client).name == "b"  # c was touched last but holds no sweep
    assert ui.find_experiment(client, "a").experiment_id == ids["a"]


def test_a_missing_experiment_names_the_available_ones(sweeps, _migrated_store, tmp_path):
    client, _, _ = sweeps
    with pytest.raises(ValueError, match=r"'nope'.*\['Default', 'a', 'b', 'c'\]"):
        ui.find_experiment(client, "nope")
    shutil.copy(_migrated_store, tmp_path / "empty.db")
    empty = MlflowClient(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.create_experiment("no_sweeps")
    with pytest.raises(ValueError, match=r"holds a sweep.*no_sweeps"):
        ui.find_experiment(empty)


def test_urls_open_the_runs_table_and_the_newest_sweep(sweeps):
    client, ids, runs = sweeps
    exp = client.get_experiment(ids["b"])
    base = f"http://127.0.0.1:5123/#/experiments/{ids['b']}"
    plain = ui.urls(client, exp, "127.0.0.1", 5123)
    assert plain["runs"] == plain["all_runs"] == f"{base}/runs?workflowType=machine_learning"  # no view saved yet
    assert plain["parent"] == f"{base}/runs/{runs['b']}?workflowType=machine_learning"
    assert plain["sweep_id"] == "s-b2"
    assert plain["filter"] == "tags.role = 'cell'"

    assert ui.save_view(client, ids["b"]) == "transfer-verdicts"
    pages = ui.urls(client, exp, "127.0.0.1", 5123)
    assert pages["runs"] == f"{base}/runs?workflowType=machine_learning&viewStateShareKey=transfer-verdicts"
    assert pages["all_runs"] == plain["all_runs"]
    assert "parent" not in ui.urls(client, client.get_experiment(ids["c"]), "127.0.0.1", 5000)
    assert ui.urls(client, exp, "::1", 5000)["all_runs"].startswith("http://[::1]:5000/#/")
    assert ui.urls(client, exp, "http://mlflow.example:8080/", 0)["runs"].startswith("http://mlflow.example:8080/#/")


def test_saved_view_is_the_uis_envelope_and_is_written_once(sweeps):
    client, ids, _ = sweeps
    ui.save_view(client, ids["a"])
    value = client.get_experiment(ids["a"]).tags[ui.VIEW_TAG]
    envelope = json.loads(value)
    assert envelope["name"] == "Transfer verdicts" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == "tags.role = 'cell'"
    assert state["orderByKey"] == "metrics.`delta`" and state["orderByAsc"] is False
    assert {"tags.`verdict`", "metrics.`delta`", "metrics.`ci_low`", "metrics.`failed`"} <= set(
        state["selectedColumns"]
    )
    time.sleep(0.01)
    ui.save_view(client, ids["a"])
    assert client.get_experiment(ids["a"]).tags[ui.VIEW_TAG] == value  # unchanged state: not rewritten


def test_print_only_prints_the_urls_and_how_to_start(sweeps, store, capsys):
    _, ids, runs = sweeps
    assert ui.main(["--tracking-uri", store, "--experiment", "b", "--port", "5123", "--print-only"]) == 0
    out = capsys.readouterr().out
    assert (
        f"http://127.0.0.1:5123/#/experiments/{ids['b']}/runs?workflowType=machine_learning&viewStateShareKey=" in out
    )
    assert f"/runs/{runs['b']}?workflowType=machine_learning" in out and "s-b2" in out
    assert f"Start the UI: python -m benchmark.ui --tracking-uri {store} --experiment b --port 5123" in out

    assert ui.main(["--tracking-uri", store, "--experiment", "nope", "--print-only"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_serving_execs_mlflow_ui_and_warns_off_loopback(sweeps, store, monkeypatch, caplog, capsys):
    calls = []

    def fake_exec(file, args):
        calls.append(args)
        raise SystemExit(0)

    monkeypatch.setattr(ui.os, "execvp", fake_exec)
    with pytest.raises(SystemExit):
        ui.main(["--tracking-uri", store])
    assert calls[-1][1:] == ["-m", "mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                             "--port", "5000"]  # fmt: skip
    assert "binding" not in caplog.text
    with pytest.raises(SystemExit):
        ui.main(["--tracking-uri", store, "--host", "0.0.0.0", "--port", "5001"])
    assert calls[-1][-4:] == ["--host", "0.0.0.0", "--port", "5001"]
    assert "binding the MLflow UI to 0.0.0.0" in caplog.text
    assert "http://127.0.0.1:5001/#/experiments/" in capsys.readouterr().out  # the URL to open locally
    assert ui.is_loopback("localhost") and ui.is_loopback("::1") and not ui.is_loopback("example.org")


# ----------------------------------------------------------------------------------------------------------------
# A real sweep, a real `mlflow ui`, a real (headless) Chromium


# one worker runs this module and builds its module-scoped fixtures below once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_ui")


@pytest.fixture(scope="module")
def served(tmp_path_factory, _migrated_store):
    """A small real sweep in a fresh store, served by `mlflow ui` on loopback; yields the printed URLs and more."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (`apt-get install chromium`; .ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("ui")
    shutil.copy(_migrated_store, tmp / "mlflow.db")
    uri, port = f"sqlite:///{tmp / 'mlflow.db'}", free_port()
    # the store is migrated already, so the UI starts while the sweep trains
    server = subprocess.Popen([*ui.command(uri, "127.0.0.1", port), "--workers", "1"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        sweep = run_entry(
            [sys.executable, "-m", "benchmark.run", "-m", *SWEEP, f"tracking.uri={uri}",
             f"tracking.artifact_root={tmp / 'artifacts'}", f"cache_dir={tmp / 'cache'}",
             f"hydra.sweep.dir={tmp / 'sweep'}"],
            cwd=ROOT, env=ENV, timeout=600,
        )  # fmt: skip
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        printed = run_entry(
            [sys.executable, "-m", "benchmark.ui", "--tracking-uri", uri, "--port", str(port), "--print-only"],
            cwd=ROOT, env=ENV, timeout=120,
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        wait_healthy(server, f"http://127.0.0.1:{port}")
        yield {"uri": uri, "client": MlflowClient(uri), "printed": printed.stdout, "port": port}
    finally:
        stop(server, grace_s=3)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("TEST_ARTIFACTS_DIR")
    out = Path(folder) / "ui" if folder else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser(served, tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile; MLflow's assistant side panel kept closed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 820},
        )
        context.add_init_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        )
        context.set_default_timeout(60_000)
        yield context
        context.close()


@pytest.fixture
def page(browser):
    """A new tab per test: each URL is opened as a user pasting it would (a hash-only change within one tab is a
    same-document navigation, after which MLflow's runs page can stay on its loading skeleton)."""
    tab = browser.new_page()
    yield tab
    tab.close()


def _printed_url(printed: str, label: str) -> str:
    """The URL on the line after the line starting with ``label`` in `python -m benchmark.ui --print-only`."""
    match = re.search(rf"^\s*{re.escape(label)}.*\n\s*(http\S+)$", printed, re.MULTILINE)
    assert match, printed
    return match.group(1)


def _grid(page) -> list[dict[str, str]]:
    """The runs table as rendered, top to bottom: {column id: cell text} per row, joined across ag-grid's pinned
    and scrolling parts (each renders its own `.ag-row` with the same row index)."""
    return page.evaluate(
        """() => {
            const rows = new Map();
            for (const row of document.querySelectorAll('.ag-row[row-index]')) {
                const index = Number(row.getAttribute('row-index'));
                if (!rows.has(index)) rows.set(index, {});
                for (const cell of row.querySelectorAll('[col-id]')) {
                    const text = (cell.querySelector('a') ?? cell).innerText;  // a run name is a link
                    rows.get(index)[cell.getAttribute('col-id')] = text.trim();
                }
            }
            return [...rows.keys()].sort((a, b) => a - b).map((index) => rows.get(index));
        }"""
    )


def _names(page) -> set[str]:
    return {row.get(NAME_COL) for row in _grid(page)} - {None}


def _wait_for_names(page, expected: set[str], timeout_s: float = 30) -> set[str]:
    """The run names in the table once they equal ``expected`` (or whatever they are at the timeout)."""
    deadline = time.time() + timeout_s
    while (names := _names(page)) != expected and time.time() < deadline:
        page.wait_for_timeout(250)
    return names


def _runs(served, role: str) -> list:
    client = served["client"]
    exp = client.get_experiment_by_name("ui")
    return client.search_runs([exp.experiment_id], f"tags.role = '{role}'")


@pytest.mark.slow  # with the two below: a real sweep, `mlflow ui` and Chromium, ~70 s (default suite near its 10-min
# limit at slow hours): CI runs them
def test_browser_runs_table_ranks_cells_by_delta_with_verdicts(served, page, shots):
    transfers = {r.info.run_name: r for r in _runs(served, "cell")}  # one cell run per cell of the sweep
    assert len(transfers) == 4
    page.goto(_printed_url(served["printed"], "Cells of every sweep"))
    page.locator(".ag-row", has_text="cell__synth_digits__digits__finetune__").first.wait_for()
    for column in (VERDICT_COL, DELTA_COL):  # shown by the saved view, without touching "Columns"
        page.locator(f".ag-header-cell[col-id='{column}']").wait_for()
    assert _wait_for_names(page, set(transfers)) == set(transfers), "exactly the cell runs (no parent row)"
    page.wait_for_timeout(500)  # let the last cells paint before the screenshot
    page.screenshot(path=shots / "ui_runs_table.png")
    grid = _grid(page)
    for row in grid:
        run = transfers[row[NAME_COL]]
        assert row[VERDICT_COL] == run.data.tags["verdict"] and row[VERDICT_COL] in VERDICTS
        assert float(row[DELTA_COL]) == pytest.approx(run.data.metrics["delta"], abs=1e-6)
    deltas = [float(row[DELTA_COL]) for row in grid]
    assert deltas == sorted(deltas, reverse=True), "helpful transfers first"


@pytest.mark.slow  # shares the served sweep above: CI runs it
def test_browser_all_runs_nest_the_jobs_under_the_sweep(served, page, shots):
    (parent,) = _runs(served, "sweep")
    children = {r.info.run_name for role in ("transfer", "baseline", "pretrain", "cell") for r in _runs(served, role)}
    page.goto(_printed_url(served["printed"], "All runs"))
    row = page.locator(".ag-row", has_text=parent.info.run_name).first
    row.wait_for()
    assert parent.info.run_name.startswith("sweep__ui__")
    assert not children & _names(page), "children are collapsed under their sweep"
    row.locator("[col-id='attributes.`Run Name`'] button").first.click()
    page.locator(".ag-row", has_text="synth_digits__digits__finetune__n5__s0").first.wait_for()
    assert _wait_for_names(page, {parent.info.run_name} | children) == {parent.info.run_name} | children
    page.screenshot(path=shots / "ui_all_runs_expanded.png")


@pytest.mark.slow  # shares the served sweep above: CI runs it
def test_browser_parent_run_page_renders_the_verdict_table(served, page, shots):
    (parent,) = _runs(served, "sweep")
    url = _printed_url(served["printed"], "Latest sweep")
    assert parent.info.run_id in url
    page.goto(url)
    page.get_by_text(parent.info.run_name).first.wait_for()
    table = page.locator("table", has=page.locator("th", has_text="verdict")).first
    table.wait_for(state="attached")  # the description's Markdown has rendered
    more = page.get_by_text("Show more", exact=True)
    if more.count():
        more.first.click()  # a long description is folded after a few lines
    table.wait_for(state="visible")
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=shots / "ui_parent_run.png")
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    assert {"source", "target", "strategy", "delta", "verdict"} <= set(headers), headers
    rows = [[c.strip() for c in tr.locator("td").all_inner_texts()] for tr in table.locator("tbody tr").all()]
    assert len(rows) == 4  # 2 sources x 2 strategies, one label budget
    column = {name: headers.index(name) for name in ("source", "strategy", "verdict")}
    assert {r[column["strategy"]] for r in rows} == {"finetune", "linear_probe"}
    assert {r[column["source"]] for r in rows} == {"synth_digits", "shapes"}
    assert {r[column["verdict"]] for r in rows} <= VERDICTS
