"""Reports people read: row models (model.py) of a run, a comparison and a history, rendered to
the terminal (terminal.py) and to Markdown (markdown.py). Reads results and their analysis only."""
