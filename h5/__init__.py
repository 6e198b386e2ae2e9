"""Campaign pages (H5): the mobile pages visitors open inside WeChat, server-rendered."""
