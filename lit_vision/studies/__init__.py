"""Studies: many ordinary runs read together.

- `lit-vision tune`: an Optuna study over a YAML search space (`space`), each trial an ordinary
  `lit-vision fit` in its own version_N (`runner`), reported to the study every epoch and pruned
  when hopeless (`pruning`), stored in any SQLAlchemy database (`tune`), summed up as a table,
  a best recipe and plots (`report`).
- `--seeds 0,1,2` on fit / validate / test (and inside tune): the same run once per seed, then
  mean, standard deviation and 95% t-interval of every final metric (`seeds`, `summary`).

Each run is a child process (`runner`), never a function call: see that module for why.
"""
