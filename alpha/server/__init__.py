"""Alpha's HTTP server (`python -m alpha serve`): the OpenAI-compatible `/v1` API over the batched
inference engine, `/health`, `/metrics`, and the run pages and APIs. See `app.py` for how a feature
module plugs in."""
