"""The registry's read-only web dashboard (``ota registry serve --dashboard-listen``)."""
