"""Running a suite: plan the cells, schedule work units (cell, repetition), run each in an
isolated worker process, and assemble the result records. Prints nothing: progress goes to a
callback the CLI supplies."""
