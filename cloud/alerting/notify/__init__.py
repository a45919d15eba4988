"""Notifications: the page, its channels (signed webhook, WeCom and DingTalk robots, e-mail), the retry policy,
the dispatcher with its delivery log, and the dashboard push."""
