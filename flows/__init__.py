"""Prefect orchestration around the DVC DAG: when it runs, stage-by-stage execution, approval, promotion.

Importing any flow first points PREFECT_HOME (and matplotlib's cache) into the project named by `--root` (else the
current folder), before prefect is imported: the ephemeral Prefect of a flow run writes its database there, not under
~/.prefect. A PREFECT_HOME the user set wins."""

import sys

from mllmcl.entry import local_state_environment, root_from_argv

local_state_environment(root_from_argv(sys.argv[1:]))
