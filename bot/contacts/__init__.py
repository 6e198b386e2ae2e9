"""One person, one contact: the one way an event enters the store, One ID merges, and the read side (contacts, timelines)."""
