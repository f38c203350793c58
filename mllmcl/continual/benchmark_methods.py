"""The benchmark's vocabulary: which methods exist, their settings and names. Kept apart from baselines.py (which
pulls in the configuration and the models) so that `mllmcl --help` builds its parser without them."""

from __future__ import annotations

# What the benchmark's kept results (.cache/benchmark units and stage routers) were made by: raise it when a change
# alters how a method trains or is scored, so a resumed run measures again instead of mixing old and new results.
# 2: validation split and early stopping for every method; routers with a question profile.
RESULTS_VERSION = 2
MSGM_LABEL_SMOOTHING = 0.01  # soft targets of mSGM (Srivastava et al.)
DEFAULT_REPLAY_PER_TASK = 50  # memory of the replay baselines: training records kept per earlier task


SHARED_ADAPTER_METHODS = {  # method -> (replay?, label smoothing)
    "lora_ft": (False, 0.0),
    "lora_ft_replay": (True, 0.0),
    "msgm": (False, MSGM_LABEL_SMOOTHING),
    "msgm_replay": (True, MSGM_LABEL_SMOOTHING),
}
METHODS = ("zero_shot_base", "oracle_experts", "mr_lora", "ncm", *SHARED_ADAPTER_METHODS, "joint")

SUMMARY_KEYS = ("MFT", "MFN", "MAA", "BWT")
COST_KEYS = (  # besides the accuracy matrix, per method (baselines.costs)
    "language_accuracy",
    "linguistic_drop",
    "linguistic_drop_pct",
    "router_accuracy",
    "train_seconds",
    "adapter_bytes",
    "latency_ms",
)
REPORT_KEYS = (*SUMMARY_KEYS, *COST_KEYS)  # every figure aggregated as mean +- std over seeds x orders

# The embedded benchmark's two tracks (MLLM-CL's), in the paper's task order.
TRACKS = {"domain": ("rs", "med", "ad", "sci", "fin"), "ability": ("ocr", "math", "count", "gui")}

# --quick: one seed, one order and a reduced budget for every method alike; on 2 CPU cores about 13 min for the domain
# track (README).
# router 600 steps: at router.lr 0.001 with question swaps, 150 left the stage routers unfit (MR-LoRA's router 0.066 in
# a quick domain run); 600 route the five domain tasks at 0.968 (2000, the pipeline's, at 0.994)
QUICK = {"seeds": 1, "orders": 1, "steps": 150, "router_steps": 600, "test_limit": 100}
# The ability track's tasks carry their own budgets (2000-3000 steps, scaled with `steps`: 150 gave them 250-375) and
# longer router prompts: at the domain's quick budget one run took 21 min here, so its quick budget is smaller (100:
# 167-250 steps per task, routers 450). A smoke run of the plumbing either way: these tasks need their own budgets.
QUICK_BY_TRACK = {"ability": {**QUICK, "steps": 100, "router_steps": 450}}


def quick_budget(track: str) -> dict:
    """--quick's settings for `track` (the domain's for a workspace's own tasks)."""
    return QUICK_BY_TRACK.get(track, QUICK)


LABELS = {
    "zero_shot_base": "zero-shot base",
    "oracle_experts": "experts, oracle routing",
    "mr_lora": "MR-LoRA (routed)",
    "ncm": "experts, nearest-mean routing",
    "lora_ft": "LoRA-FT (one shared adapter)",
    "lora_ft_replay": "LoRA-FT + replay",
    "msgm": "mSGM (soft targets)",
    "msgm_replay": "mSGM + rehearsal",
    "joint": "joint multi-task LoRA",
}
