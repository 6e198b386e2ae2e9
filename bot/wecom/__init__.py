"""WeCom specifics: follow users, the staff directory and channel QR codes (渠道活码)."""
