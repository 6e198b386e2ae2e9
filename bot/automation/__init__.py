"""The journey runtime on the database (runner, wakes, execute, …), segments, webhooks, preview, forecast."""
