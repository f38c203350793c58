"""Drift of incoming requests against what the production model learned, with Evidently, and what to do about it.

features.py   what the model sees of a request (image statistics, question, base embeddings, router verdict)
reference.py  per-task reference profiles of the production version (cached per version id)
report.py     the drift verdict (Evidently's methods) and Evidently's HTML/JSON report
policy.py     verdict -> decision: none, known drift (alert / refresh), novel data (new task / labelling request)
monitor.py    one batch end to end (a JSONL batch or traffic-log lines), the traffic reader, the event cooldown

Heavy imports (pandas, Evidently, torch) happen inside the functions. Nothing here imports flows, stages, Prefect or
DVC: the flows call `monitor_batch`; `mllmcl drift` is its command-line front."""
