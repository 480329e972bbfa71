"""The HTTP service: OpenAI's Videos API over a durable SQLite job queue, and a web studio.

app.py (routes) -> store.py (jobs in SQLite) <- worker.py (generation, in worker processes);
pool.py starts and watches the workers; params.py turns requests into jobs; inputs.py keeps
what a job is given (an image, a source video) on disk with it.
"""
