"""Judge a trained run: metrics (``metrics``), plots (``plots``), inference cost (``latency``),
``kiln eval`` (``run_eval``), gates (``gates``, ``gate_run``) and ``report.html`` (``report``).

Nothing is re-exported here, so importing ``kiln.eval.gates`` (the registry does) stays free of
torch, scikit-learn and matplotlib.
"""
