"""The WeCom sidebar (聊天工具栏) and the lead pages for sales reps: server-rendered Jinja
pages and a few JSON endpoints, each validating its input and calling one service in bot.desk
(or bot.sales for the login). No page or endpoint answers without a rep session."""
