"""Staff-facing surfaces: the JSON API (and later the console and the WeCom sidebar)."""
