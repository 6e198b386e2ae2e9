"""The test environment's settings, and the environment the run started with (captured at
import, before fixtures point it at the test servers). Shared by every test tier."""

import os

TEST_ENV = {
    "YUCHI_ENV": "test",
    "YUCHI_SECRET_KEY": "test-secret",
    "YUCHI_API_TOKEN": "test-api-token",
    "WECHAT_OA_APPID": "wxtestappid000001",
    "WECHAT_OA_SECRET": "test-oa-secret",
    "WECHAT_OA_TOKEN": "testtoken",
    "WECHAT_OA_AES_KEY": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    "WECOM_CORP_ID": "wwtestcorp0000001",
    "WECOM_AGENT_ID": "1000005",
    "WECOM_SECRET": "test-wecom-secret",
    "WECOM_TOKEN": "testwecomtoken",
    "WECOM_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "YUCHI_SWEEP_GRACE": "0.001",
    # Tests without the simulator never reach the real platform: port 9 (discard) refuses at once.
    "WECHAT_API_BASE": "http://127.0.0.1:9",
    "WECOM_API_BASE": "http://127.0.0.1:9",
}
# The environment the test run started with (before fixtures point it at test servers).
ORIGINAL_ENV = dict(os.environ)
