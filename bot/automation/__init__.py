"""The journey runtime on the database: runner, segment triggers, webhooks, preview and forecast."""
