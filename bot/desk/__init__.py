"""The sales rep's desk: what the WeCom sidebar shows and does for one rep (a customer's first
screen, the timeline in Chinese, tags, notes, stage, journeys, "my leads"), each checked
against the access rules in bot.sales.access. Composes the areas below it; only the web layer
(sidebar/) calls it."""
