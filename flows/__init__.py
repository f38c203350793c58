"""Prefect orchestration around the DVC DAG: when it runs, stage-by-stage execution, approval, promotion."""
