"""A local simulator of the parts of the WeChat Official Account and WeCom platforms that
Yuchi uses. A development and test tool: the product never imports it."""
