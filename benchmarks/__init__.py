"""Benchmarks of bulkruns against the sandbox: ``make bench`` (``python -m benchmarks.run``).

They report figures; they assert nothing and never fail on timing. See ``benchmarks/README.md``.
"""
