"""Small helpers that several parts of the package share, one per job: atomic file writes
(`files`), top-1/top-5 metrics (`metrics`), pixel scaling (`images`) and reproducible
random generators (`generators`), optimiser parameter groups (`param_groups`). Only `metrics` depends on torchmetrics; none on Lightning."""
