"""A web page to try every served model from a browser, served by the service itself.

``GET /`` redirects to ``/ui/``, a single static page (``static/index.html``, ``app.css``, ``app.js``: plain
HTML, CSS and modern JavaScript, no build step, no network access beyond the service's own API) with one
tab per task (sentiment, NER, translation with its attention heatmap, streamed generation) and a status
tab fed by ``/models`` and ``/ready``. The page calls the public JSON API with relative URLs, so it also
works behind a path prefix, and sends ``Authorization: Bearer <key>`` when a key is entered.
"""
