"""`convertctl batch`: many models, one command. plan.py makes the list of
models and each one's Options (from paths and flags, or a batch file);
worker.py converts one model in a process of its own; local.py and ray.py
run the workers (a pool on this machine, or tasks on a Ray cluster);
outcome.py and summary.py gather the combined report; matrix.py prints a
GitHub Actions matrix instead of running anything."""
