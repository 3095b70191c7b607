"""The async server: a supervisor (``supervisor.py``) starts worker processes, each a
claim loop (``loop.py``) feeding threads that run tasks (``runner.py``)."""
