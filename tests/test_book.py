"""The book: vgg.report on fake runs, and whole-book builds of a copy of the book.

Two builds run side by side (one module-scoped fixture): one with the fake smoke study
(2 seeds) plus a failed, a broken and an empty run folder, one with no runs at all. Both
must pass ``jupyter-book build --all -W --keep-going`` with zero warnings.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402
from fake_runs import write_fake_runs  # noqa: E402

from vgg import report as R  # noqa: E402
from vgg.rundir import RunDir  # noqa: E402
from vgg.spec import CLAIMS, SEEDS, Claim, PaperRow, PaperText, Side, plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).parent / "jupyter-book"
CHAPTERS = ["architectures", "protocol", "table3", "table4", "table5", "table6", "table7", "claims",
            "curves", "compute", "status"]


# --- vgg.report on fake runs -------------------------------------------------------------

@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    runs = tmp_path_factory.mktemp("fake") / "runs"
    write_fake_runs(runs, "smoke", (0, 1))
    bad = runs / "smoke" / "Z-S256-s0"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    failed = runs / "smoke" / "Y-S256-s0"
    failed.mkdir()
    (failed / "metrics.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    (runs / "smoke" / "W-S256-s0").mkdir()  # nothing in it yet
    return runs


def test_paper_results_has_every_table():
    p = R.paper_results()
    assert set(p["table"]) == {3, 4, 5, 6, 7}
    assert p.loc[(p.table == 3) & (p.config == "E") & (p.train_scale == "256-512"), "top1_val_err"].item() == 25.5
    # config matches exactly where it can ("A" is not "A-LRN"), else as a prefix (Table 6's long names)
    assert R.paper_value(PaperRow(3, "A", "256", "single-scale")) == 29.6
    assert R.paper_value(PaperRow(6, "fusion of 2 nets", eval="fusion (dense)")) == 24.0
    with pytest.raises(LookupError, match="3 rows"):
        R.paper_row(PaperRow(6, "fusion of 2 nets"))
    with pytest.raises(LookupError, match="no row"):
        R.paper_row(PaperRow(3, "F", "256"))
    # every paper row the spec names exists
    for c in CLAIMS:
        assert np.isfinite(R.paper_gain(c))


def test_a_claim_whose_paper_number_is_missing_raises():
    d, b = Side("D", "256", "dense@256"), Side("B", "256", "dense@256")
    missing_row = Claim("D beats B at S = 999", "better", d, b,
                        (PaperRow(3, "D", "999", "single-scale"), PaperRow(3, "B", "256", "single-scale")))
    with pytest.raises(LookupError, match="no row"):
        R.claims(R.load_runs("cpu", "/nonexistent")[0], claim_list=[missing_row])
    with pytest.raises(LookupError, match="no number 'nope'"):
        R.paper_gain(Claim("text only", "better", d, b, PaperText("nope")))


def test_load_runs_reads_complete_runs_and_names_broken(fake):
    runs, broken = R.load_runs("smoke", fake)
    assert len(runs) == len(plan(2))
    assert broken == [str(Path("smoke") / "Z-S256-s0" / "metrics.json")]
    assert {"train.epochs", "eval.dense@256.top1_err", "provenance.torch"} <= set(runs.columns)
    state = R.scan_runs(fake).set_index("run")
    assert state.loc["Y-S256-s0", "state"] == "failed" and state.loc["Y-S256-s0", "detail"] == "boom"
    assert state.loc["Z-S256-s0", "state"] == "broken" and "metrics.json" in state.loc["Z-S256-s0", "detail"]
    assert state.loc["W-S256-s0", "state"] == "missing"
    assert state.loc["A-S256-s0", "state"] == "complete"


def test_load_runs_of_an_empty_folder(tmp_path):
    runs, broken = R.load_runs("cpu", tmp_path / "nothing")
    assert runs.empty and broken == [] and "run" in runs.columns
    assert R.eval_table(runs).empty and R.histories(runs).empty
    assert (R.table(3, runs)["ours top-1 (95% CI)"] == R.NOT_RUN).all()
    assert (R.claims(runs)["verdict"] == R.NOT_RUN).all()
    assert R.dense_context_table(runs).empty and R.dense_gap_table(runs).empty and R.missing_results(runs).empty
    assert np.isnan(R.fit_summary(runs)["train_B"]) and R.scan_runs(tmp_path / "nothing").empty


def test_eval_table_is_long(fake):
    runs, _ = R.load_runs("smoke", fake)
    ev = R.eval_table(runs)
    d = ev[ev.run == "D-S256-512-s0"]
    assert set(d.result) == {"dense@384", "centre-crop@384", "multi-scale", "multi-crop", "multi-crop+dense",
                             "windows-as-crops@384"}
    assert set(d.protocol) == {"dense", "centre-crop", "multi-scale", "multi-crop", "multi-crop+dense",
                               "windows-as-crops"}
    assert ev["top1_err"].between(0, 100).all()
    assert d.loc[d.protocol == "windows-as-crops", "n_windows"].item() > 0


def test_missing_runs_commands(fake):
    miss = dict(R.missing_runs("cpu", 1, fake))
    assert len(miss) == len(plan(1))
    # python -m vgg run makes the folder (papermill refuses a missing one) and takes the
    # plan's row: init chain, lr, protocols, overrides (tests/test_study.py runs this command)
    assert miss["A-S256-s0"] == "python -m vgg run A --train-scale 256 --seed 0 --profile cpu"
    assert miss["D-S256-512-s0"] == "python -m vgg run D --train-scale 256-512 --seed 0 --profile cpu"
    assert miss["B-5x5-S256-ainit-s0"] == "python -m vgg run B-5x5 --train-scale 256 --seed 0 --profile cpu"
    assert R.missing_runs("smoke", 2, fake) == []


def test_book_profile_falls_back_to_smoke(fake, monkeypatch):
    monkeypatch.delenv("VGG_BOOK_PROFILE", raising=False)
    assert R.book_profile(fake) == "smoke"
    runs, profile, broken = R.book_runs(fake)
    assert profile == "smoke" and len(runs) == len(plan(2)) and broken == ["smoke/Z-S256-s0/metrics.json"]
    monkeypatch.setenv("VGG_BOOK_PROFILE", "gpu")
    runs, profile, _ = R.book_runs(fake)
    assert profile == "gpu" and runs.empty
    monkeypatch.setenv("VGG_BOOK_PROFILE", "cpu")  # asked for: no fallback
    assert R.book_profile(fake) == "cpu"


def test_tables_put_ours_next_to_the_paper(fake):
    runs, _ = R.load_runs("smoke", fake)
    t3 = R.table(3, runs)
    assert len(t3) == 13 and (t3["seeds"] == 2).all()
    assert (t3["ci lo"] <= t3["ours top-1"]).all() and (t3["ours top-1"] <= t3["ci hi"]).all()
    assert list(t3.columns[:5]) == ["net", "S", "Q", "paper top-1", "paper top-5"]
    assert t3.set_index("net").loc["B-5x5", "paper top-1"] != t3.set_index("net").loc["B-5x5", "paper top-1"]  # NaN
    assert t3.loc[t3["S"] == "[256;512]", "Q"].tolist() == ["384"] * 3
    t4 = R.table(4, runs)
    assert len(t4) == 10 and t4["Q"].iloc[0] == "224,256,288" and len(R.table(5, runs)) == 6
    t6 = R.table(6, runs)
    assert (t6["seeds"] == 2).all() and t6["paper top-1"].notna().all()
    paper7, ours7 = R.table7(runs)
    assert "GoogLeNet (7 nets)" in set(paper7["method"]) and (ours7["dataset"].str.contains("Imagenette")).all()
    assert "paper top-1" not in ours7  # the paper's Table 7 is printed apart
    shown = R.display_table(t3)
    assert list(shown.columns) == ["net", "S", "Q", "paper top-1", "ours top-1 (95% CI)", "paper top-5", "ours top-5"]
    assert shown.set_index("net").loc["B-5x5", "paper top-1"] == "–"


def test_fusion_checks_its_members(fake):
    runs, _ = R.load_runs("smoke", fake)
    d = R.run_probs(runs.loc[runs.run == "D-S256-512-s0", "path"].item())
    e = R.run_probs(runs.loc[runs.run == "E-S256-512-s0", "path"].item())
    R.check_fusable([d, e], "multi-crop")
    with pytest.raises(ValueError, match="has no 'multi-crop' outputs"):
        R.check_fusable([d, dict(e, probs={})], "multi-crop")
    with pytest.raises(ValueError, match="the same images in another order"):
        R.check_fusable([d, dict(e, ids=e["ids"][::-1])], "multi-crop")
    with pytest.raises(ValueError, match="other labels"):
        R.check_fusable([d, dict(e, labels=e["labels"][::-1])], "multi-crop")
    with pytest.raises(ValueError, match="class order"):
        R.check_fusable([d, dict(e, classes=e["classes"][::-1])], "multi-crop")
    # a seed whose member is missing is left out of the fusion, not fused with fewer nets
    fused = R.correct_by_seed(runs[runs.run != "E-S256-512-s1"], Side("D + E (multi-crop)"))
    assert sorted(fused) == [0]


def test_seeds_scored_on_other_images_are_left_out_not_mispaired():
    t, f = np.ones(4, bool), np.zeros(4, bool)
    assert R.same_images({0: t, 1: f, 2: np.ones(3, bool)}) == [0, 1]  # seed 2: 3 images, not 4
    assert R.same_images({0: t, 1: t}, {1: f, 2: f}) == [1]  # both sides needed
    assert R.same_images({0: t}, {0: np.ones(5, bool)}) == []  # sides differ: no pair
    assert R.same_images({0: np.ones(3, bool), 1: t}) == [1]  # a tie: the larger set
    assert R.same_images({}) == [] and R.same_images() == []


def test_claims_and_verdicts(fake):
    runs, _ = R.load_runs("smoke", fake)
    c = R.claims(runs, n_boot=200)
    assert len(c) == len(CLAIMS) and (c["seeds"] == 2).all()
    assert c.loc[c.claim.str.startswith("Depth helps: B"), "paper gain"].item() == pytest.approx(0.9)
    assert c.loc[c.claim.str.startswith("B beats its shallow"), "paper gain"].item() == 7.0  # the text's number
    for _, r in c.iterrows():  # the gain is the mean of the seeds' own gains, each printed
        assert len(r["seed gains"]) == 2 and r["ours gain"] == pytest.approx(np.mean(r["seed gains"]))
        shown = R.claims_display(c.loc[[_]])["ours (points, 95% CI)"].item()
        assert shown.endswith("per seed: " + ", ".join(f"{g:+.1f}" for g in r["seed gains"]))
    one = R.claims(runs[runs["seed"] == 0], n_boot=50)
    assert R.claims_display(one)["ours (points, 95% CI)"].str.endswith("; one seed").all()
    assert set(c["verdict"]) <= {"reproduced", "contradicted", "inconclusive"}
    counts = R.verdict_counts(c)
    assert sum(counts.values()) == len(c) and counts[R.NOT_RUN] == 0
    assert R.verdict("better", 0.1, 2) == "reproduced"
    assert R.verdict("better", -3, -0.1) == "contradicted"
    assert R.verdict("better", -1, 1) == "inconclusive"
    assert R.verdict("no gain", 0.2, 1) == "contradicted"
    assert R.verdict("no gain", -0.5, 0.5) == "reproduced"
    assert R.verdict("no gain", -3, 0.5) == "reproduced"  # LRN hurts or helps < 1 point: it does not help
    assert R.verdict("no gain", -0.5, 1.5) == "inconclusive"
    assert R.verdict("equal", -0.5, 0.5) == "reproduced"
    assert R.verdict("equal", -5.5, -3.7) == "contradicted"  # E clearly worse than D: not equal
    assert R.verdict("equal", 1.2, 2.0) == "contradicted"
    assert R.verdict("equal", -1.5, 0.5) == "inconclusive"
    assert R.verdict("not worse", -0.5, 2) == "reproduced" and R.verdict("not worse", -3, -1.5) == "contradicted"
    with pytest.raises(ValueError, match="unknown claim kind 'same'"):
        R.verdict("same", 0, 1)
    assert R.verdict("better", np.nan, np.nan) == R.NOT_RUN
    assert R.bound(-0.021) == "-0.02" and R.bound(-0.6) == "-0.6" and R.bound(0.0) == "+0.0"


def test_fusion_claim_sets_the_fusion_against_its_best_member_seed_by_seed(fake):
    runs, _ = R.load_runs("smoke", fake)
    name = "D + E (multi-crop & dense)"
    fusion = Side(name)
    best = Side(name, member="best")
    claim = next(c for c in CLAIMS if c.text.startswith("Fusion helps"))
    assert claim.better == fusion and claim.worse == best
    fused, chosen = R.correct_by_seed(runs, fusion), R.correct_by_seed(runs, best)
    members = {n: R.correct_by_seed(runs, Side(n, "256-512", "multi-crop+dense")) for n in "DE"}
    names = R.best_members(runs, best)
    assert sorted(chosen) == sorted(fused) == [0, 1]
    for seed in (0, 1):  # per seed, the member with the lower top-1 error, not a fixed one
        errs = {n: 100 * (1 - members[n][seed].mean()) for n in "DE"}
        win = min(errs, key=errs.get)
        assert names[seed] == f"{win}/[256;512]" and np.array_equal(chosen[seed], members[win][seed])
    c = R.claims(runs, n_boot=100, claim_list=[claim]).iloc[0]
    want = [100 * (fused[s].mean() - chosen[s].mean()) for s in (0, 1)]  # the best member's error - fused's
    assert c["seed gains"] == pytest.approx(want) and c["best member"] == names
    assert c["paper gain"] == pytest.approx(24.4 - 23.7)
    assert "best member per seed: " + ", ".join(names.values()) in R.claims_display(
        R.claims(runs, n_boot=50, claim_list=[claim]))["protocol (paper's Q)"].item()
    # a seed whose member is missing has no best member: it is left out
    assert sorted(R.correct_by_seed(runs[runs.run != "E-S256-512-s1"], best)) == [0]
    with pytest.raises(ValueError, match="names a fusion"):
        R.correct_by_seed(runs, Side("D", "256-512", "multi-crop", member="best"))
    with pytest.raises(ValueError, match="is not a side"):
        R.correct_by_seed(runs, Side(name, member="worst"))


def test_claims_state_protocol_test_scales_and_dense_context_penalty(fake):
    runs, _ = R.load_runs("smoke", fake)
    c = R.claims(runs, n_boot=100).set_index("claim")
    assert c.loc["Depth helps: B beats A", "protocol"] == "dense, Q = 256"
    assert c.loc["Jittered S beats fixed S (D)", "protocol"] == "dense, Q = 384 vs dense, Q = 256"
    assert c.loc["B beats its shallow 5×5 form (centre crop)", "protocol"] == "centre-crop, Q = 256"
    fusion = next(t for t in c.index if t.startswith("Fusion helps"))
    assert c.loc[fusion, "protocol"] == "multi-crop+dense, Q = 256, 384, 512 (fused vs best member)"
    # the penalty: window in the dense pass minus the same window as a crop at Q = 384, mean over seeds
    want = {}
    for net, s in (("D", "256-512"), ("E", "256-512")):
        recs = [RunDir(fake / "smoke" / f"{net}-S{s}-s{seed}").results()["windows-as-crops@384"] for seed in (0, 1)]
        want[f"{net}/[256;512]"] = np.mean([r["window_in_dense"] - r["window_as_crop"] for r in recs])
    assert c.loc[fusion, "penalty"] == pytest.approx(want)
    pen = c.loc["Jittered S beats fixed S (D)", "penalty"]
    assert pen["D/[256;512]"] == pytest.approx(want["D/[256;512]"]) and np.isnan(pen["D/256"])  # not measured
    shown = R.claims_display(c.reset_index()).set_index("claim")
    col = "dense-context penalty, Q = 384 (points)"
    assert shown.loc["Depth helps: B beats A", col] == "–"
    assert shown.loc["Jittered S beats fixed S (D)", col] == f"D/[256;512] {want['D/[256;512]']:+.1f}, D/256 –"
    # jittered vs fixed S: the paper's comparison is the verdict; the same-Q one stands beside it
    beside = c.loc["Jittered S beats fixed S (D)", "beside"]
    assert beside["paper gain"] == pytest.approx(26.8 - 25.6) and beside["seeds"] == 2
    assert "Q = 384" in beside["claim"] and c["beside"].isna().sum() == len(c) - 1
    assert shown.loc["Jittered S beats fixed S (D)", "beside the verdict"].endswith(beside["verdict"])
    assert (shown.drop(index="Jittered S beats fixed S (D)")["beside the verdict"] == "–").all()
    html = R.verdict_table(c.reset_index()).to_html()
    assert R.VERDICT_COLOURS[c["verdict"].iloc[0]][0] in html  # the verdicts are coloured
    assert R.dense_penalty(runs.iloc[:0]) == {}


def test_rank_summary_counts_pairs_in_the_papers_order():
    t = pd.DataFrame({"net": list("ABCD"), "paper top-1": [30.0, 29.0, 28.0, 28.0],
                      "ours top-1": [31.0, 32.0, 30.0, float("nan")]})
    r = R.rank_summary(t, ["net"])
    # rows A-C: A>B (ours reversed), A>C (same), B>C (same); D has no number of ours
    assert (r["n"], r["pairs"], r["same"], r["paper_best"], r["rank"]) == (3, 3, 2, "C", 1)
    assert R.rank_summary(t.iloc[:1], ["net"])["pairs"] == 0


def test_numbers_for_sentences():
    assert R.fmt(18.2999, ".1f", "%") == "18.3%" and R.fmt(np.nan) == R.NOT_RUN and R.fmt(None) == R.NOT_RUN
    assert R.fmt(-0.04, "+.1f") == "0.0" and R.fmt(2.71, "+.1f") == "+2.7" and R.fmt(8994.0, ",.0f") == "8,994"
    assert R.fit_phrase(18.7, 18.3) == "as closely as" and R.fit_phrase(21.7, 18.3) == "less closely than"
    assert R.fit_phrase(17.0, 18.3) == "more closely than"
    assert R.last_map(64) == ("2×2", 1.0) and R.last_map(224) == ("7×7", pytest.approx(24 / 49))


def test_histories_and_compute(fake):
    runs, _ = R.load_runs("smoke", fake)
    h = R.histories(runs)
    assert set(h["run"]) == set(runs["run"]) and list(h.columns[:2]) == ["run", "epoch"]
    ct = R.compute_table(runs)
    assert ct["train (h)"].gt(0).all() and ct["MFU (%)"].notna().all()
    assert (ct["eval (min)"] == 0.5).all()  # the run's own total, not the overlapping protocol times


def test_training_curves_read_a_run_folder_or_its_history(fake):
    import matplotlib
    matplotlib.use("Agg")
    folder = fake / "smoke" / "D-S384-s0"
    for where in (folder, folder / "history.csv"):
        loss, err = R.training_curves(where, title="D")
        assert len(loss.lines) == 2 and len(err.lines) == 3  # loss, train and held-out error; the lr drop


def test_report_imports_vgg_at_module_level_and_stays_small():
    """No function-local import of a vgg module (they hide cycles); no file over 400 lines."""
    for f in sorted((ROOT / "vgg" / "report").glob("*.py")):
        assert len(f.read_text().splitlines()) <= 400, f.name
        for fn in ast.walk(ast.parse(f.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        assert node.level == 0 and not (node.module or "").startswith("vgg"), (f.name, fn.name)
                    elif isinstance(node, ast.Import):
                        assert not any(a.name.startswith("vgg") for a in node.names), (f.name, fn.name)


# --- whole-book builds -------------------------------------------------------------------

def _copy_book(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / f, dest / f)
    shutil.copytree(ROOT / "book", dest / "book", ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    (dest / "runs").mkdir()
    return dest


def _as_printed_before_a_reevaluation(folder: Path) -> None:
    """Give a fake run's notebook the template's example command and a results table that
    printed dense@384 3 points higher than its metrics.json has now."""
    nb = json.loads((folder / "run_config.ipynb").read_text())
    now = json.loads((folder / "metrics.json").read_text())["eval"]
    table = "  top1_err top5_err\n" + "".join(f"{k}  {v['top1_err'] + (3.0 if k == 'dense@384' else 0):.2f}  "
                                             f"{v['top5_err']:.2f}\n" for k, v in now.items())
    nb["cells"][0]["source"] += ("\n\nRun it with papermill, one command per experiment:\n\n```\n"
                                 "papermill book/run_config.ipynb runs/cpu/C-S256-s0/run_config.ipynb -p net C\n```\n")
    nb["cells"].append({"cell_type": "code", "id": "results", "metadata": {}, "execution_count": 2,
                        "source": 'pd.DataFrame(metrics["eval"]).T[["top1_err", "top5_err"]]',
                        "outputs": [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                                     "data": {"text/plain": table}}]})
    (folder / "run_config.ipynb").write_text(json.dumps(nb))


@pytest.fixture(scope="module")
def books(tmp_path_factory, fake):
    base = tmp_path_factory.mktemp("books")
    full = _copy_book(base / "full")
    shutil.rmtree(full / "runs")
    shutil.copytree(fake, full / "runs")
    _as_printed_before_a_reevaluation(full / "runs" / "smoke" / "D-S384-s0")
    empty = _copy_book(base / "empty")
    env = {k: v for k, v in os.environ.items() if k not in ("VGG_RUNS", "VGG_BOOK_PROFILE")}
    procs = {name: subprocess.Popen([str(JB), "build", "--all", "-W", "--keep-going", "."], cwd=d, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, d in (("full", full), ("empty", empty))}
    out = {}
    for name, p in procs.items():
        log, _ = p.communicate(timeout=900)
        out[name] = (p.returncode, log)
    return {"full": full, "empty": empty, "logs": out}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.title, self._in_title = [], 0, "", False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        elif tag == "table":
            self.tables += 1
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _page(html: Path) -> tuple[_Page, str]:
    text = html.read_text()
    p = _Page()
    p.feed(text)
    return p, text


def _warnings(log: str) -> list[str]:
    return [l for l in log.splitlines() if ("WARNING" in l or "ERROR" in l) and "IPKernelApp" not in l]


@pytest.mark.parametrize("which", ["full", "empty"])
def test_book_builds_without_warnings(books, which):
    rc, log = books["logs"][which]
    # the warnings first (with a line of context each), then the log's tail
    lines = log.splitlines()
    context = ["\n".join(lines[max(i - 1, 0):i + 3]) for i, l in enumerate(lines) if l in set(_warnings(log))]
    assert rc == 0, "\n---\n".join(context[:10]) + "\n=== tail ===\n" + log[-2000:]
    assert _warnings(log) == [], log[-3000:]


@pytest.mark.parametrize("which", ["full", "empty"])
def test_every_chapter_has_its_tables_and_images(books, which):
    html = books[which] / "_build" / "html"
    assert (html / "book" / "intro.html").exists()
    for ch in CHAPTERS:
        page, text = _page(html / "book" / f"{ch}.html")
        assert page.tables >= 1, ch
        assert "Traceback" not in text and "Error" not in page.title, ch
        for src in page.imgs:
            if src.startswith(("http:", "https:", "data:")):
                continue
            assert (html / "book" / src.split("#")[0]).resolve().exists(), (ch, src)
    plots = {"architectures": 1, "table3": 1, "claims": 1, "compute": 1}
    if which == "full":
        plots.update(curves=1, table4=1, table5=1, table6=1)
    for ch, n in plots.items():
        assert len([s for s in _page(html / "book" / f"{ch}.html")[0].imgs if "_images" in s]) >= n, ch


def _text(html: Path) -> str:
    """A page's text, tags removed and whitespace collapsed (glued numbers are spans of their own)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html.read_text()))


@pytest.mark.parametrize("which", ["full", "empty"])
def test_no_number_of_a_sentence_reads_nan(books, which):
    html = books[which] / "_build" / "html" / "book"
    for ch in CHAPTERS + ["intro"]:
        assert not re.search(r"\bnan\b", _text(html / f"{ch}.html"), re.I), ch


def test_full_book_shows_runs_broken_and_run_pages(books):
    html = books["full"] / "_build" / "html"
    _, status = _page(html / "book" / "status.html")
    assert "Z-S256-s0" in status and "metrics.json" in status  # broken, by name
    assert "Y-S256-s0" in status and "failed" in status
    # seed 2 is missing; its runs are priced at seeds 0-1's epochs
    text = _text(html / "book" / "status.html")
    assert "13 of the 13 missing runs can be priced" in text and "with two jobs at a time" in text
    assert "The other 0 cannot be priced yet" in text
    _, t3 = _page(html / "book" / "table3.html")
    assert "smoke" in t3 and R.NOT_RUN not in t3
    page, _ = _page(html / "runs" / "smoke" / "D-S256-512-s0" / "run_config.html")
    assert page.title.startswith("Run D-S256-512-s0 (smoke)")
    # a run page shows its own command, and numbers metrics.json has since replaced, with the current ones
    run = unescape(_text(html / "runs" / "smoke" / "D-S384-s0" / "run_config.html"))  # Sphinx writes @ as &#64;
    assert "python -m vgg run D --train-scale 384 --seed 0 --profile smoke" in run
    assert "run_config.ipynb runs/cpu/C-S256-s0" not in run
    dense = json.loads((books["full"] / "runs" / "smoke" / "D-S384-s0" / "metrics.json").read_text())["eval"]["dense@384"]
    assert "Superseded numbers" in run
    assert re.search(rf"dense@384\s*{dense['top1_err'] + 3:.2f}\s*{dense['top1_err']:.2f}", run)
    assert "Superseded" not in _text(html / "runs" / "smoke" / "D-S256-s0" / "run_config.html")
    n_pages = len(list((html / "runs" / "smoke").glob("*/run_config.html")))
    assert n_pages == len(plan(2))
    claims = _text(html / "book" / "claims.html")
    assert "D fits them" in claims and f"{len(R.dense_claims())} claims rest on dense evaluation" in claims
    # the answer first: the verdicts' summary, then the table with its protocol and penalty columns
    assert claims.index(f"Of {len(CLAIMS)} claims of the paper") < claims.index("dense-context penalty, Q = 384")
    assert "best member per seed" in claims and "same Q: jittered S vs S = 384" in claims
    assert claims.index("dense-context penalty, Q = 384") < claims.index("Method: the gain")
    assert f"{len(CLAIMS)} claims, on the smoke profile" in _text(html / "book" / "intro.html")
    assert "Takeaway. Of the" in _text(html / "book" / "table3.html")
    notes = claims[claims.index("Depth. At S = 256"):claims.index("Per net and training scale")]
    assert R.NOT_RUN not in notes and "(+" in notes  # every number of the notes is there, gaps signed


@pytest.mark.parametrize("width", [1400, 420])
def test_every_page_fits_a_real_browser_at_desktop_and_phone_width(books, width):
    """Chromium lays out each chapter and a run page of the full book: no table or figure
    wider than its column, no missing image, no traceback, no "nan" on the page."""
    if not browser.available():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    html = books["full"] / "_build" / "html"
    pages = [html / "book" / f"{ch}.html" for ch in ["intro"] + CHAPTERS]
    pages.append(html / "runs" / "smoke" / "D-S384-s0" / "run_config.html")
    problems = {}
    for page in pages:
        found = browser.probe(page, width, html)
        assert found["viewport"] == width, found
        bad = {k: v for k, v in found.items() if k in ("overflow", "broken", "traceback", "nan") and v}
        if bad:
            problems[page.relative_to(html).as_posix()] = bad
    assert not problems, json.dumps(problems, indent=1)


def test_pages_name_their_sources_and_provenance(books):
    html = books["full"] / "_build" / "html"
    t5 = _text(html / "book" / "table5.html")
    assert "Runs behind this table" in t5 and "D-S256-512-s0" in t5 and "python -m vgg study --profile smoke" in t5
    status = _text(html / "book" / "status.html")
    assert "This book was built on" in status and "Provenance" in status and "arXiv:1409.1556" in status
    run = _text(html / "runs" / "smoke" / "D-S256-s0" / "run_config.html")
    assert "Provenance." in run and "torch" in run
    intro = _text(html / "book" / "intro.html")
    assert "Limitations: what our profiles change" in intro
    assert intro.index("Limitations") < intro.index("arXiv:1409.1556")


def test_the_execution_cache_is_emptied_when_the_runs_or_the_code_change(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import vgg_exec_cache as X

    monkeypatch.delenv("VGG_RUNS", raising=False)
    (tmp_path / "runs" / "cpu" / "A-S256-s0").mkdir(parents=True)
    metrics = tmp_path / "runs" / "cpu" / "A-S256-s0" / "metrics.json"
    metrics.write_text("{}")
    first = X.inputs_digest(tmp_path)
    (tmp_path / "runs" / "cpu" / "A-S256-s0" / "checkpoint.pt").write_bytes(b"x")  # never read by the book
    assert X.inputs_digest(tmp_path) == first
    metrics.write_text('{"status": "complete"}')
    assert X.inputs_digest(tmp_path) != first
    second = X.inputs_digest(tmp_path)
    monkeypatch.setenv("VGG_BOOK_PROFILE", "cpu128")
    assert X.inputs_digest(tmp_path) != second

    class App:  # what the extension reads of Sphinx's app
        srcdir = str(tmp_path)
        env = type("Env", (), {"mystnb_config": type("C", (), {"execution_cache_path": str(tmp_path / "cache")})})
    X.reset_if_stale(App)
    (tmp_path / "cache" / "entry").write_text("a cached chapter")
    X.reset_if_stale(App)  # nothing changed: kept
    assert (tmp_path / "cache" / "entry").exists()
    metrics.write_text('{"status": "complete", "eval": {}}')
    X.reset_if_stale(App)  # a run changed: every chapter runs again
    assert not (tmp_path / "cache" / "entry").exists() and (tmp_path / "cache" / X.STAMP).exists()


def test_empty_book_says_what_is_missing(books):
    html = books["empty"] / "_build" / "html"
    _, status = _page(html / "book" / "status.html")
    for p in plan(1):
        assert p.name in status
    assert "python -m vgg run E --train-scale 256-512 --seed 0 --profile cpu" in status
    text = _text(html / "book" / "status.html")
    assert f"0 of the {len(plan(SEEDS))} missing runs can be priced" in text
    assert f"The other {len(plan(SEEDS))} cannot be priced yet" in text
    _, claims = _page(html / "book" / "claims.html")
    assert R.NOT_RUN in claims


def test_deviations_take_numbers_from_the_profiles(books):
    from vgg.profiles import PROFILES

    cpu = PROFILES["cpu"]
    text = _text(books["empty"] / "_build" / "html" / "book" / "protocol.html")
    assert (f"{cpu.max_epochs} from scratch, lr ÷10 after epochs {cpu.lr_steps[0]} and {cpu.lr_steps[1]}; "
            f"{cpu.max_epochs_finetune} when fine-tuning") in text
    assert f"| Batch | {PROFILES['gpu'].batch_size} | {cpu.batch_size} |" not in text  # a table, not its source
    assert f"Batch {PROFILES['gpu'].batch_size} {cpu.batch_size} CPU memory" in text
    assert f"crop {cpu.crop}, S 256 → {cpu.px(256)}" in text
    assert "Initialisation of B-5x5" in text  # its A-init is listed, from vgg.spec


def test_dense_windows_at_the_papers_scale_see_the_whole_image_and_at_ours_do_not():
    t = R.dense_windows().set_index("Q")
    assert all(R.score_map_side(q, 224)[1] == 0 for q in t.index)  # every Q of the paper is a multiple of 32: tiled whole
    assert t.loc[384, "paper score map"] == "6×10"  # 12 conv5 positions minus the 7-wide FC1, plus 1
    assert t.loc[256, ["cpu px", "cpu score map", "cpu px outside"]].tolist() == [73, "1×2", 9]
    assert t.loc[384, "cpu score map"] == "2×3"
    with pytest.raises(ValueError, match="smaller than the crop"):
        R.score_map_side(50, 64)


def test_results_of_an_older_protocol_keep_their_own_names_and_are_listed(tmp_path):
    folders = write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["A", "B"])
    m = json.loads((folders[0] / "metrics.json").read_text())
    del m["eval_version"]  # made before versions were recorded: version 1, windows from the top-left
    (folders[0] / "metrics.json").write_text(json.dumps(m))
    runs, profile, _ = R.book_runs(tmp_path)
    assert profile == "cpu" and set(runs["run"]) == {f.name for f in folders}  # complete: both are read
    old = runs.set_index("run").loc[folders[0].name]
    assert pd_notna(old["eval.dense-topleft@256.top1_err"]) and pd_notna(old["eval.centre-crop@256.top1_err"])
    assert "eval.dense@256.top1_err" not in runs or not pd_notna(old.get("eval.dense@256.top1_err"))
    t3 = R.table(3, runs).set_index("net")
    assert t3.loc["A", "seeds"] == 0 and t3.loc["B", "seeds"] == 1  # Table 3 asks for dense@256 only
    todo = R.missing_results(runs)
    assert todo["run"].tolist() == [folders[0].name] and todo["missing"].item() == "dense@256, multi-scale"
    assert todo["command"].item() == f"python -m vgg evaluate runs/cpu/{folders[0].name} -P dense -P multi-scale"


def pd_notna(x) -> bool:
    return x is not None and x == x


def test_reevaluation_table_reads_before_and_after_from_the_runs_records(tmp_path):
    folders = write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["A"])
    m = json.loads((folders[0] / "metrics.json").read_text())
    after = m["eval"]["dense@256"]["top1_err"]
    m["reevaluated"] = [{"from_version": 1, "to_version": 2,
                         "top1_err_before": {"dense@256": after + 3.0, "centre-crop@256": m["eval"]["centre-crop@256"]["top1_err"]}}]
    (folders[0] / "metrics.json").write_text(json.dumps(m))
    t = R.reevaluation_table("cpu", tmp_path).set_index("protocol")
    assert t.loc["dense@256", "change"] == -3.0 and t.loc["dense@256", "version"] == "1 → 2"
    assert t.loc["centre-crop@256", "change"] == 0.0
    assert R.reevaluation_table("cpu", tmp_path / "none").empty


def _history(folder, train_errs, held_errs, lrs):
    rows = ["epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s"]
    rows += [f"{e},1.0,{t},{h},5.0,{lr},60.0,150.0"
             for e, (t, h, lr) in enumerate(zip(train_errs, held_errs, lrs), 1)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")


def test_fit_table_and_summary_read_the_init_chain(tmp_path):
    folders = {f.name: f for f in write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["B", "D", "E"])}
    for name in ("E-S384-s0", "E-S256-512-s0"):  # not run yet: E's chain stops at S = 256
        shutil.rmtree(folders[name])
    _history(folders["B-S256-s0"], [60, 30, 20.0], [60, 35, 25.0], [0.01, 0.01, 0.001])
    _history(folders["D-S256-s0"], [60, 30, 20.5], [60, 35, 24.0], [0.01, 0.01, 0.001])
    _history(folders["E-S256-s0"], [70, 40, 23.0], [70, 45, 26.0], [0.01, 0.01, 0.001])
    _history(folders["D-S384-s0"], [36.0, 32, 31, 30.5], [33, 31, 29.0, 30.0], [1e-3, 1e-3, 1e-4, 1e-4])
    _history(folders["D-S256-512-s0"], [31, 29.0], [30, 28.0], [1e-3, 1e-4])
    runs, _ = R.load_runs("cpu", tmp_path)
    t = R.fit_table(runs)
    # the study's order, and a fine-tune's epochs follow its parent's: 3, 3 + 4, 3 + 4 + 2
    assert list(zip(t["net"], t["training S"])) == [("B", "256"), ("D", "256"), ("D", "384"),
                                                    ("D", "[256;512]"), ("E", "256")]
    assert t["chain epochs"].tolist() == [3, 3, 7, 9, 3]
    d384 = t.iloc[2]
    assert d384["train (%)"] == 30.5 and d384["gap"] == -0.5
    s = R.fit_summary(runs)
    # D within a point of B counts as the same fit; E is three points worse
    assert (s["train_B"], s["train_D"], s["train_E"]) == (20.0, 20.5, 23.0)
    assert s["phrase_D"] == "as closely as" and s["phrase_E"] == "less closely than"
    assert (s["width"], s["crop"], s["n_train"], s["epochs"]) == (0.25, 64, 9000, 4)
    assert (s["end_256_train"], s["end_256_held"], s["start_384"]) == (20.5, 24.0, 36.0)
    assert (s["end_384_train"], s["end_384_held"]) == (30.5, 30.0)
    assert (s["end_256-512_train"], s["end_256-512_held"]) == (29.0, 28.0)
    # the held-out range over the fine-tune's epochs at its last lr (1e-4): 29.0 and 30.0
    assert (s["last_lr_epochs"], s["held_min"], s["held_max"]) == (2, 29.0, 30.0)
    assert s["n_ft"] == 4 and s["lr_ft"] == 1e-3
    # the held-out error over the last lr spread 1 point: flat; S = 384 starts 15.5 points
    # above S = 256's end and ends 10 above it
    assert s["phrase_flat"].startswith("flat within the held-out slice's noise")
    assert s["gap_in"] == pytest.approx(15.5) and s["gap_out"] == pytest.approx(10.0)
    fig = R.fit_plot(runs)
    assert [len(ax.lines) for ax in fig.axes] == [3, 6]  # B, D, E; three scales x (train, held-out)
    # a deeper net that fits better is said so
    _history(folders["E-S256-s0"], [70, 40, 17.0], [70, 45, 26.0], [0.01, 0.01, 0.001])
    assert R.fit_summary(R.load_runs("cpu", tmp_path)[0])["phrase_E"] == "more closely than"
    empty = R.fit_summary(runs.iloc[:0])
    assert np.isnan(empty["train_B"]) and empty["phrase_D"] == "" and R.fit_table(runs.iloc[:0]).empty
    # a fine-tune whose parent is not among the runs has no place in the chain
    chain = R.chain_histories(runs[runs["run"] != "D-S256-s0"])
    assert chain.loc[chain["run"] == "D-S384-s0", "chain_epoch"].isna().all()


def test_fit_summary_averages_each_runs_first_and_last_epoch_over_seeds(tmp_path):
    folders = {f.name: f for f in write_fake_runs(tmp_path, "cpu", seeds=(0, 1), nets=["D"])}
    for seed, start, end, n in ((0, 36.0, 30.0, 4), (1, 40.0, 32.0, 6)):
        _history(folders[f"D-S256-s{seed}"], [60, 20.0], [60, 25.0], [0.01, 0.001])
        errs = [start] + [34.0] * (n - 2) + [end]
        _history(folders[f"D-S384-s{seed}"], errs, [30.0] * n, [1e-3] * (n - 1) + [1e-4])
    s = R.fit_summary(R.load_runs("cpu", tmp_path)[0])
    # seeds of unequal length (the plateau rule): each run's own first and last epoch, averaged
    assert s["start_384"] == 38.0 and s["end_384_train"] == 31.0


def test_retrained_table_sets_each_first_training_against_the_one_on_record(tmp_path):
    folders = {f.name: f for f in write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["D"])}
    f = folders["D-S384-s0"]
    before = json.loads((f / "metrics.json").read_text())
    RunDir(f).retire(reason="test")  # as the study does; then "train again": here, the same record with changes
    after = dict(before, eval={k: dict(v, top1_err=v["top1_err"] + 1.5) for k, v in before["eval"].items()})
    (f / "metrics.json").write_text(json.dumps(after))
    t = R.retrained_table("cpu", tmp_path)
    assert set(t["run"]) == {"D-S384-s0"} and (t[t["protocol"] != "held-out (last epoch)"]["change"] == 1.5).all()
    assert set(t["protocol"]) >= set(before["eval"]) and len(t) >= len(before["eval"])
    cpu = before["provenance"]["cpu"]
    s = R.retrained_summary(t)
    assert (s["runs"], s["first_on"], s["second_on"], s["n"]) == (1, cpu, cpu, len(before["eval"]))
    assert (s["median"], s["largest"], s["mean"]) == (1.5, 1.5, 1.5)
    none = R.retrained_summary(R.retrained_table("cpu", tmp_path / "none"))
    assert none["runs"] == 0 and none["n"] == 0 and np.isnan(none["median"])


def test_study_compute_counts_every_epoch_and_each_evaluation(tmp_path):
    write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["A"])  # A-S256-s0: 4 epochs, 30 s of evaluation
    pilot = tmp_path / "cpu-pilot" / "A-S256-s0"
    shutil.copytree(tmp_path / "cpu" / "A-S256-s0", pilot)
    m = json.loads((pilot / "metrics.json").read_text())
    m["reevaluated"] = [{"eval_seconds": 30.0}]  # its first evaluation was overwritten
    (pilot / "metrics.json").write_text(json.dumps(m))
    failed = tmp_path / "cpu-pilot" / "B-S256-s0"  # no metrics: a stopped run's epochs count
    failed.mkdir()
    _history(failed, [80, 70], [80, 75], [0.01, 0.01])
    (tmp_path / "cpu-pilot" / "C-S256-s0").mkdir()  # an empty folder: not a run yet
    (tmp_path / "cpu-pilot" / "README.md").write_text("notes")
    t = R.study_compute(tmp_path).set_index("runs folder")
    # the fake histories' epochs take 30, 60, 90 and 120 s
    assert t.loc["runs/cpu", ["runs", "complete", "trained again", "epochs"]].tolist() == [1, 1, 0, 4]
    assert t.loc["runs/cpu", "train (h)"] == pytest.approx(300 / 3600)
    assert t.loc["runs/cpu", "eval (h)"] == pytest.approx(30 / 3600)
    # a first training set aside (RunDir.retire) was spent too
    (tmp_path / "cpu" / "A-S256-s0" / "superseded.json").write_text(json.dumps(
        [dict(epochs=45, train_seconds=3000.0, eval_seconds=50.0, reevaluated=1)]))
    t = R.study_compute(tmp_path).set_index("runs folder")
    assert t.loc["runs/cpu", ["runs", "complete", "trained again", "epochs"]].tolist() == [1, 1, 1, 49]
    assert t.loc["runs/cpu", "train (h)"] == pytest.approx(3300 / 3600)
    assert t.loc["runs/cpu", "eval (h)"] == pytest.approx(130 / 3600)
    (tmp_path / "cpu" / "A-S256-s0" / "superseded.json").unlink()
    t = R.study_compute(tmp_path).set_index("runs folder")
    assert t.loc["runs/cpu-pilot", ["runs", "complete", "epochs"]].tolist() == [2, 1, 6]
    assert t.loc["runs/cpu-pilot", "train (h)"] == pytest.approx(420 / 3600)
    assert t.loc["runs/cpu-pilot", "eval (h)"] == pytest.approx(60 / 3600)
    assert t.loc["total", "total (h)"] == pytest.approx((300 + 30 + 420 + 60) / 3600)
    assert R.study_compute(tmp_path / "nowhere").empty


def test_dense_gap_and_context_tables_and_the_claims_they_bear_on(tmp_path):
    folders = {f.name: f for f in write_fake_runs(tmp_path, "cpu", seeds=(0,), nets=["C", "D"])}
    runs, _ = R.load_runs("cpu", tmp_path)
    g = R.dense_gap_table(runs)
    assert list(zip(g["net"], g["training S"], g["Q"])) == [
        ("C", "256", 256), ("C", "384", 384), ("C", "[256;512]", 384),
        ("D", "256", 256), ("D", "384", 384), ("D", "[256;512]", 384)]
    m = json.loads((folders["D-S384-s0"] / "metrics.json").read_text())["eval"]
    assert g.iloc[4]["dense − crop"] == pytest.approx(m["dense@384"]["top1_err"] - m["centre-crop@384"]["top1_err"])
    assert R.dense_claims() == ["Jittered S beats fixed S (D)", "Multi-scale testing helps (D, jittered S)",
                                "Multi-crop at least as good as dense (D)", "Multi-crop & dense is best (D)",
                                "Fusion helps (D+E beats its best member, multi-crop & dense)", "E ≈ D (depth saturates at 19 layers)"]
    # at Q = 256 every claim but B vs B-5x5 (a centre crop, no dense windows): multi-scale of a jittered net includes 256
    assert R.dense_claims(256) == [c.text for c in CLAIMS if c.better.protocol != "centre-crop@256"]
    # windows-as-crops records: the runs' own, and one the dense-context command of earlier
    # code wrote (RunDir reads it as one); a half-written one is skipped
    e = dict(window_in_dense=45.0, window_as_crop=35.0, dense=28.0, crops_on_grid=21.0, centre_crop=27.0,
             n_images=100, n_windows=200)
    (folders["D-S256-s0"] / "dense_context_Q256.json").write_text(json.dumps(
        dict(run="D-S256-s0", net="D", train_scale="256", seed=0, q=256, q_px=73, top1_err=e)))
    (folders["C-S256-s0"] / "dense_context_Q256.json").write_text('{"run": "C-S25')
    t = R.dense_context_table(R.load_runs("cpu", tmp_path)[0])
    assert t["run"].tolist() == ["C-S384-s0", "C-S256-512-s0", "D-S256-s0", "D-S384-s0", "D-S256-512-s0"]
    d256 = t.set_index("run").loc["D-S256-s0"]
    assert (d256["Q"], d256["images"], d256["window in dense pass (%)"], d256["window crops averaged (%)"]) == \
        (256, 100, 45.0, 21.0)
    own = json.loads((folders["C-S384-s0"] / "metrics.json").read_text())["eval"]["windows-as-crops@384"]
    assert t.iloc[0]["same window as crop (%)"] == own["window_as_crop"] and t.iloc[0]["images"] == own["n_images"]
    s = R.dense_context_summary(t)
    diff = t["window in dense pass (%)"] - t["same window as crop (%)"]
    assert (s["n"], s["crop_better"]) == (5, int((diff > 0).sum())) and s["averaged_best"] >= 1
    assert (s["lo_256"], s["hi_256"]) == (10.0, 10.0) and s["lo_384"] == diff[t["Q"] == 384].min()
    assert np.isnan(R.dense_context_summary(t.iloc[:0])["lo_384"])
