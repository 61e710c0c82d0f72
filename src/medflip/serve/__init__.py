"""Look at a trained model: `medflip serve` (a local web page + JSON API) and `medflip explain` (a figure).

serve.inference computes what the page shows (zero-shot bars, similar report sentences, grounding), serve.app
is the Starlette app, serve/static holds the page (plain HTML/JS/CSS, nothing fetched from the internet).
"""
