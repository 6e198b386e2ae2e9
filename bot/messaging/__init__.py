"""Outbound messages: payloads, the platform's send rules, the outbox and its delivery, broadcasts."""
