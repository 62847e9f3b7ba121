"""Operator tools beside the experiment core: progress and time left (``progress``), benchmarks
(``bench``). Nothing of the core imports them."""
