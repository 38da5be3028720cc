"""Judge a trained run: metrics (``metrics``), plots (``plots``), inference cost (``latency``),
``kiln eval`` (``run_eval``), ``kiln gate`` (``gate_run``, with the gates of ``kiln.runs.gates``)
and ``report.html`` (``report``).

Nothing is re-exported here, so importing one module stays free of torch, scikit-learn and
matplotlib until it needs them.
"""
