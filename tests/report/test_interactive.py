"""The interactive page (index.html) of a real sweep's report: GAN extragradient at three learning
rates (the largest diverges) x two seeds. What the plots are made of, read in Python; then the page
in a real headless browser (Debian's chromium, driven by Playwright): it loads from the file with
every request that is not file: blocked, draws every figure with no script error, a hover shows
the group and its value, a legend click hides the group, the buttons switch log and linear axes
and a drag zooms. Skipped only where /usr/bin/chromium is absent (`.ci/run` installs it)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.report.__main__ import build
from runner.report.figures import metric_figure
from runner.report.interactive import figure_spec
from tests.helpers import ROOT

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (CI runs as root); nothing that reaches out to the network on its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PLOTS = "figure.plotly div.plot"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    job = subprocess.run([sys.executable, "-m", "runner", "-m", "task=gan", "task.scheme=extragradient",
                          "optim.lr=0.05,0.2,2", "seed=0,1", "task.steps=60", "log_every=5", "task.path_every=0",
                          "logger=none", "threads=1", f"hydra.sweep.dir={root}/sweep"],
                         cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert job.returncode == 0, job.stdout + job.stderr
    return build([root / "sweep"], root / "report")


def test_each_group_is_one_legend_entry_with_its_runs_and_marks_and_hover_names_it(report):
    """Two seeds a group: no band, each run a thin line in its group's legend entry, hover naming the seed."""
    groups = [g for g in report.groups]
    fig = metric_figure(groups, "gan/dist_to_eq", ("log", None))
    fig.savefig(io.BytesIO(), format="png")  # settles the layout, as the report's PNG does
    spec = figure_spec(fig)
    legend = [t for t in spec["data"] if t["showlegend"]]
    assert sorted(t["legendgroup"] for t in legend) == sorted(f"{g.label} (n=2, no band)" for g in groups)
    for g in groups:
        mine = [t for t in spec["data"] if t.get("legendgroup") == f"{g.label} (n=2, no band)"]
        assert not [t for t in mine if t.get("fill") == "toself"]  # two seeds: no band
        lines = [t for t in mine if "hovertemplate" in t]
        means = [t for t in lines if t["hovertemplate"].startswith(f"<b>{g.label} (n=2, no band)</b><br>")]
        runs = [t for t in lines if t["hovertemplate"].startswith(f"<b>{g.label} seed ")]
        assert len(means) >= 3 and len(runs) == 6, g.label  # per x-axis (step, time, gradient evaluations): 1 mean, 2 runs
        assert all(t["line"]["width"] < means[0]["line"]["width"] for t in runs)
        if g.runs[0].status == "diverged":
            assert any(t["mode"] == "markers" and t["marker"]["symbol"] == "x-thin-open" for t in lines)
    assert [spec["layout"][f"yaxis{k}"]["type"] for k in ("", "2", "3")] == ["log"] * 3
    assert spec["layout"]["yaxis2"]["matches"] == "y"  # panels share y, as in the PNG
    assert spec["axes"] == {"x": ["xaxis", "xaxis2", "xaxis3"], "y": ["yaxis", "yaxis2", "yaxis3"]}


def test_text_from_run_folders_cannot_end_the_page_script(report):
    page = report.html.read_text()
    specs = re.findall(r"<script type=application/json class=spec>(.*?)</script>", page, re.S)
    assert len(specs) == len(report.figures)
    assert all(json.loads(s)["data"] for s in specs)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: the browser test needs Debian's chromium (`apt-get install -y chromium`; "
                    ".ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, report):
    """The report's index.html loaded from file://, every other request blocked and recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked, errors = [], []

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    tab = context.new_page()
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(report.html.as_uri(), wait_until="load")
    yield tab, blocked, errors
    context.close()


def test_the_page_draws_every_figure_offline_with_no_script_error(page, report):
    tab, blocked, errors = page
    traces = tab.evaluate(f"""() => [...document.querySelectorAll("{PLOTS}")].map(d =>
        d._fullData ? d.querySelectorAll(".scatterlayer .trace").length : 0)""")
    assert len(traces) == len(report.figures) == 8 and all(traces), traces
    assert not blocked and not errors, (blocked, errors)


def _point(tab, figure: str) -> dict:
    """Page position, group and value of the middle point of the first group line in `figure`."""
    return tab.evaluate("""name => {
        const fig = [...document.querySelectorAll("figure.plotly")].find(f => f.textContent.includes(name));
        const d = fig.querySelector("div.plot"), box = d.getBoundingClientRect();
        const t = d._fullData.find(t => t.showlegend && t.mode.includes("lines"));
        const xa = d._fullLayout[t.xaxis.replace("x", "xaxis")], ya = d._fullLayout[t.yaxis.replace("y", "yaxis")];
        const m = Math.floor(t.x.length / 2);
        fig.scrollIntoView();
        const now = d.getBoundingClientRect();
        return {px: now.left + xa._offset + xa.c2p(t.x[m]), py: now.top + ya._offset + ya.c2p(t.y[m]),
                x: t.x[m], y: t.y[m], group: t.legendgroup, index: [...document.querySelectorAll("figure.plotly")].indexOf(fig)};
    }""", figure)


def test_a_hover_shows_the_group_and_its_value(page):
    tab, _, errors = page
    p = _point(tab, "fig_00_gan_dist_to_eq")
    tab.mouse.move(p["px"], p["py"])
    label = tab.locator(".hoverlayer .hovertext").first
    label.wait_for(timeout=5000)
    shown = label.text_content()
    assert p["group"] in shown and "step: " in shown, shown
    value = float(re.search(r"gan/dist_to_eq: ([-0-9.e+]+)", shown.replace("−", "-")).group(1))
    assert value == pytest.approx(p["y"], rel=1e-4), shown
    assert not errors


def test_a_legend_click_hides_the_group_and_the_buttons_switch_axes(page):
    tab, _, errors = page
    p = _point(tab, "fig_00_gan_dist_to_eq")
    fig = tab.locator("figure.plotly").nth(p["index"])
    visible = f"""() => document.querySelectorAll("figure.plotly")[{p['index']}].querySelector("div.plot")._fullData
        .map(t => [t.legendgroup, t.visible])"""
    before = tab.evaluate(visible)
    fig.locator(".legend .traces", has_text=p["group"]).locator(".legendtoggle").click()
    # plotly waits out its double-click delay (300 ms) before a single click acts
    tab.wait_for_function(f"() => ({visible})().some(([g, v]) => v === 'legendonly')", timeout=5000)
    after = tab.evaluate(visible)
    assert all(v == "legendonly" for g, v in after if g == p["group"]), after
    assert [v for g, v in after if g != p["group"]] == [v for g, v in before if g != p["group"]]
    types = f"""() => {{const l = document.querySelectorAll("figure.plotly")[{p['index']}].querySelector("div.plot")._fullLayout;
        return [l.xaxis.type, l.yaxis.type, l.yaxis2.type];}}"""
    assert tab.evaluate(types) == ["linear", "log", "log"]
    fig.get_by_role("button", name="y: linear").click()
    fig.get_by_role("button", name="x: log").click()
    assert tab.evaluate(types) == ["log", "linear", "linear"]
    assert not errors


def test_a_drag_zooms(page):
    tab, _, errors = page
    p = _point(tab, "fig_00_gan_dist_to_eq")
    ranges = f"""() => document.querySelectorAll("figure.plotly")[{p['index']}].querySelector("div.plot")._fullLayout.xaxis.range"""
    before = tab.evaluate(ranges)
    tab.mouse.move(p["px"] - 60, p["py"] - 40)
    tab.mouse.down()
    tab.mouse.move(p["px"] + 60, p["py"] + 40, steps=5)
    tab.mouse.up()
    tab.wait_for_timeout(300)
    after = tab.evaluate(ranges)
    assert after[1] - after[0] < (before[1] - before[0]) / 2, (before, after)
    assert not errors
