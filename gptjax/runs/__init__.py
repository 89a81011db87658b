"""Runs and research tooling: the run directory, and what reads many of them.

rundir.py        the run directory: its layout, and every read and write of it
checkpoint.py    orbax checkpoints inside it
run.py           a run as read at one moment (config, info, metrics), for comparing runs
compare.py       the table, plots and report of several runs
experiment.py    sweeps: a base config, named overrides, a report
plots.py         PNG plots of run metrics
provenance.py    commit, machine and command of a result
"""
