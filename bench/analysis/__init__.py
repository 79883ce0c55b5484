"""Analysis: from raw samples and result records to figures, verdicts, comparisons, history,
sweeps and rankings. Pure functions over records; prints nothing (bench.report renders)."""
