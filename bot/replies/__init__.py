"""The instant answer to a callback: reply rules, keyword matching, and receive() (decide the reply, record the event)."""
