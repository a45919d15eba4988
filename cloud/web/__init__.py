"""The dashboard: the single-page app (static/), its server routes, and the small read APIs only it needs."""
