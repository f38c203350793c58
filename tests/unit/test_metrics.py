"""Continual-learning metrics on hand-computed matrices."""

import pytest

from mllmcl.continual import metrics

A = [[0.9, None, None], [0.6, 0.8, None], [0.3, 0.7, 0.95]]


def test_metrics_on_a_hand_computed_matrix():
    assert metrics.mft(A) == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert metrics.mfn(A) == pytest.approx((0.3 + 0.7 + 0.95) / 3)
    assert metrics.maa(A) == pytest.approx((0.9 + 0.7 + (0.3 + 0.7 + 0.95) / 3) / 3)
    assert metrics.bwt(A) == pytest.approx(((0.3 - 0.9) + (0.7 - 0.8)) / 2)
    f = metrics.forgetting(A)
    assert f[0] == pytest.approx(0.6) and f[1] == pytest.approx(0.1) and f[2] is None


def test_isolated_experts_have_zero_backward_transfer():
    a = [[0.8, None], [0.8, 0.7]]
    assert metrics.bwt(a) == 0 and metrics.forgetting(a)[0] == 0


def test_method_md_check_mr_lora_mfn():
    finals = [80.87, 65.32, 54.12, 56.71, 91.12]
    a = [[None] * 5 for _ in range(4)] + [finals]
    assert round(metrics.mfn(a), 2) == 69.63


def test_linguistic_degradation_is_base_minus_candidate():
    d = metrics.linguistic_degradation(0.8, 0.6)
    assert d["delta"] == pytest.approx(0.2) and d["percent"] == pytest.approx(25.0)


def test_accuracy_matrix_from_registry_history():
    def version(tasks, accs):
        return {"tasks": tasks, "eval": {"tasks": {t: {"accuracy": a} for t, a in zip(tasks, accs)}}}

    history = [version(["rs"], [0.9]), version(["rs", "med"], [0.85, 0.7]), version(["rs", "med"], [0.88, 0.75])]
    tasks, rows = metrics.accuracy_matrix(history, version(["rs", "med", "ad"], [0.88, 0.75, 0.6]))
    assert tasks == ["rs", "med", "ad"]
    assert rows == [[0.9, None, None], [0.88, 0.75, None], [0.88, 0.75, 0.6]]


def test_summary_says_how_many_stages_it_covers():
    s = metrics.summary([[None, None], [0.8, 0.7]])
    assert s["stages"] == 2 and s["stages_known"] == 1 and s["BWT"] is None
    assert metrics.summary(A)["stages_known"] == 3


def test_task_orders_start_with_the_given_one_and_are_distinct_and_reproducible():
    from mllmcl.continual.baselines import task_orders

    tasks = ["rs", "med", "ad", "sci", "fin"]
    orders = task_orders(tasks, 3)
    assert orders[0] == tasks and len(orders) == 3
    assert len({tuple(o) for o in orders}) == 3 and all(sorted(o) == sorted(tasks) for o in orders)
    assert task_orders(tasks, 3) == orders  # the same permutations on every run and machine
    assert len(task_orders(["a", "b"], 5)) == 2  # only as many orders as there are permutations


def test_aggregate_gives_mean_and_sample_std_and_skips_undefined_metrics():
    from mllmcl.continual.benchmark_run import aggregate

    def run(mfn, bwt):
        return {"methods": {"lora_ft": {"MFT": 0.9, "MFN": mfn, "MAA": 0.8, "BWT": bwt}}}

    figures = aggregate([run(0.5, -0.3), run(0.7, -0.1), run(0.6, None)])["lora_ft"]
    assert figures["MFN"] == {"mean": 0.6, "std": 0.1, "n": 3}
    assert figures["BWT"] == {"mean": -0.2, "std": 0.1414, "n": 2}  # the run without a BWT is left out, not zeroed
    assert aggregate([run(0.5, -0.3)])["lora_ft"]["MFN"] == {"mean": 0.5, "std": None, "n": 1}


def test_the_benchmark_page_shows_every_method_with_mean_and_std_and_the_linguistic_curve():
    from mllmcl.continual.baselines import costs
    from mllmcl.continual.benchmark_report import render_html, render_markdown
    from mllmcl.continual.benchmark_run import aggregate, final_by_task

    def run(order, final):
        stages = [{"stage": 1, "language_accuracy": 0.9, "language_base_accuracy": 0.95, "train_seconds": 2.0},
                  {"stage": 2, "language_accuracy": 0.8, "language_base_accuracy": 0.95, "train_seconds": 3.0}]  # fmt: skip
        methods = {
            "lora_ft": {"matrix": [[0.9, None], [final, 0.8]], "per_stage": stages, "MFT": 0.85, "MFN": (final + 0.8) / 2,
                        "MAA": 0.8, "BWT": final - 0.9,
                        **costs(train_seconds=5.0, adapter_bytes=1_190_000, latency_ms=3.2, per_stage=stages)},
            "joint": {"matrix": [[None, None], [0.85, 0.85]], "per_stage": [], "MFT": None, "MFN": 0.85, "MAA": None,
                      "BWT": None},
        }  # fmt: skip
        return {"tasks": order, "methods": methods}

    runs = [run(["a", "b"], 0.3), run(["b", "a"], 0.5)]
    result = {**runs[0], "runs": runs, "aggregate": aggregate(runs), "final": final_by_task(runs)}
    page = render_html(result)
    assert "LoRA-FT (one shared adapter)" in page and "joint multi-task LoRA" in page
    assert "-0.500 ± 0.141" in page  # BWT over the two orders
    assert "+0.150" in page and "+15.8" in page  # text-only drop of the shared adapter vs the base, absolute and %
    assert "1.19" in page and "3.2" in page  # adapter MB, ms per request
    assert page.count("data:image/png") == 1 + 2 + 1  # final bars, one matrix per method, the linguistic curve
    assert "http" not in page and "b → a" in page
    md = render_markdown(result)
    assert "| joint multi-task LoRA | - | 0.850 ± 0.000 | - | - |" in md  # no sequence: MFT, MAA, BWT missing, not 0
    assert "| LoRA-FT (one shared adapter) | 0.550 ± 0.354 | 0.650 ± 0.212 |" in md  # final accuracy per task, by name


def test_claims_are_judged_on_the_mean_and_counted_run_by_run_and_missing_methods_are_not_measured():
    from mllmcl.continual.benchmark_claims import check_claims
    from mllmcl.continual.benchmark_report import render_markdown

    def run(mr_bwt, mr_mfn, lora_drop, msgm_drop):
        return {
            "methods": {
                "mr_lora": {"BWT": mr_bwt, "MFN": mr_mfn},
                "oracle_experts": {"MFN": 0.90, "BWT": 0.0},
                "lora_ft": {"BWT": -0.40, "MFN": 0.30, "linguistic_drop": lora_drop},
                "msgm": {"BWT": -0.30, "MFN": 0.35, "linguistic_drop": msgm_drop},
            }
        }

    runs = [run(-0.001, 0.89, 0.50, 0.40), run(-0.011, 0.85, 0.50, 0.55)]
    checks = {c.key: c for c in check_claims(runs)}
    bwt = checks["mr_lora_bwt"]
    assert (bwt.mean, bwt.holds, bwt.runs_holding, bwt.runs) == (-0.006, False, 1, 2)  # one run held, the mean did not
    ratio = checks["mr_lora_vs_oracle"]  # 0.89 / 0.9 and 0.85 / 0.9
    assert ratio.mean == 0.9667 and ratio.holds is False and ratio.runs_holding == 1
    assert checks["mr_lora_vs_lora_ft"].holds and checks["lora_ft_forgets"].holds
    assert checks["msgm_linguistic"].mean == 0.025 and checks["msgm_linguistic"].holds  # 0.10 and -0.05
    missing = checks["msgm_replay_linguistic"]  # mSGM + rehearsal was not run: no verdict, never a pass
    assert missing.holds is None and missing.mean is None and missing.runs == 0
    md = render_markdown({"tasks": ["a"], "methods": {}, "runs": runs})
    assert "| MR-LoRA keeps what it learned: BWT >= -0.005 | -0.006 ± 0.007 | does not hold (in 1 of 2 runs) |" in md
    assert "not measured" in md
    # mSGM's 0.10 and -0.05: over the bar on the mean, in one run of two
    assert (
        "LoRA-FT's text-only drop minus mSGM's > 0 | +0.025 ± 0.106 | holds on the mean only (in 1 of 2 runs) |" in md
    )
