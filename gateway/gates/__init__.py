"""The risk gates after authorization.

Rate gates (`rate`: QPS limits, delete budgets, breakers) and change gates (`change`: freeze
windows, the rule library, risk webhooks, approvals); their policy files (`policy` loads the gates
directory; `limits_policy`, `change_policy`, `cron`); approval tickets (`approvals`); kubegate's
breaker API (`breaker_api`); the `kubegate policy test` cases for gates (`cases`). Gates reach
clusters through `clusters.client`, never through the engine.
"""
