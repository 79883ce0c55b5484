"""The PyTorch backend: the backend (backend.py) and how a module executes (modes.py)."""
