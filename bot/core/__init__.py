"""Infrastructure every area stands on: settings, database, tables, rq on Redis, the embedded Redis, the platform clients, jieba, and the unit of work."""
