"""The `mllmcl` command line: the top floor, the one part of the package allowed to reach orchestration
(flows/) and monitoring/ (import-linter checks the layers; see pyproject.toml)."""
