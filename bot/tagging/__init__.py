"""Contacts' tags: tag rules and the interest dictionary, applying them to events, and syncing tags to the platforms."""
