"""The clients a benchmark runs, each in its own process so that its CPU time and peak
memory are its own. Each prints one JSON object (see :mod:`benchmarks.clients.report`) as
its last line of output."""
