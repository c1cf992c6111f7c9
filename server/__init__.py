"""``ex4d serve``: the local engine process (FastAPI over the engine, one GPU worker process per GPU).

Importing this package is cheap; FastAPI is imported by ``server.app`` only, never by the worker.
"""
